"""The console's questions about vulnerabilities (issue 8), always within the asking
user's scope and always in SQL; and the exceptions (accepted risk) CRUD.

Vocabulary:

* a *vulnerability* is one advisory (an OSV record such as ``DSA-5510-1`` or
  ``DEBIAN-CVE-2023-4863``, a GHSA, or an NVD CVE), with its aliases (CVE ids);
* a *finding* is one device exposed to one vulnerability through one package
  (for Debian/Ubuntu the *source* package); it is open until the job sees it gone;
* a finding is *hidden* while an unexpired exception covers it (same vulnerability,
  the device or its group, and the package when the exception names one). Hidden
  findings stay open in the table and show again when the exception expires.

Revoked devices never count as exposed. Callers pass ``now_us`` so one page shows one
consistent picture (and tests can move time).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa

from sekimori.server.store.schema import (
    devices,
    kev_entries,
    vuln_aliases,
    vuln_exceptions,
    vuln_feed_imports,
    vuln_findings,
    vulnerabilities,
)
from sekimori.server.store.scope import Scope

__all__ = [
    "DAY_US",
    "FEED_KINDS",
    "VULN_SORTS",
    "CompliancePoint",
    "DeviceFinding",
    "ExposedDevice",
    "FeedStatus",
    "VulnDetail",
    "VulnException",
    "VulnList",
    "VulnSummary",
    "compliance_series",
    "create_exception",
    "delete_exception",
    "device_findings",
    "exposed_devices",
    "feed_status",
    "get_exception",
    "get_vulnerability",
    "list_exceptions",
    "list_vulnerabilities",
    "update_exception",
]

DAY_US: Final = 86_400_000_000
FEED_KINDS: Final = ("osv", "kev", "nvd")

VulnSort = Literal["exposed", "-exposed", "cvss", "-cvss", "id", "-id", "fix", "-fix"]
VULN_SORTS: Final[tuple[str, ...]] = (
    "exposed",
    "-exposed",
    "cvss",
    "-cvss",
    "id",
    "-id",
    "fix",
    "-fix",
)


@dataclass(frozen=True, slots=True)
class VulnSummary:
    """One row of the vulnerability list."""

    id: str
    summary: str
    severity: str  # CRITICAL | HIGH | MEDIUM | LOW | NONE | "" (unknown)
    cvss_score: float | None
    known_exploited: bool
    kev_added_us: int | None
    published_us: int | None
    # The earliest fix date among the open findings in scope (None: no fix yet).
    fix_available_us: int | None
    # Devices in scope with an open, not hidden finding.
    exposed_devices: int
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VulnList:
    items: list[VulnSummary]
    total: int


@dataclass(frozen=True, slots=True)
class VulnDetail:
    """One vulnerability with its KEV entry (when known exploited)."""

    id: str
    feed: str
    summary: str
    severity: str
    cvss_score: float | None
    cvss_vector: str | None
    published_us: int | None
    modified_us: int | None
    known_exploited: bool
    kev_added_us: int | None
    kev_due_us: int | None
    kev_ransomware: str | None  # "Known" | "Unknown" | None (not in KEV)
    kev_vendor_product: str | None
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExposedDevice:
    """A device exposed to one vulnerability (the vulnerability page)."""

    device_id: str
    hostname: str
    group_id: int
    package: str
    installed_version: str
    fixed_version: str | None
    confidence: str  # high (OSV) | low (NVD CPE)
    first_seen_us: int
    fix_available_us: int | None
    # Whole days since the fix became available (None: no fix); see the module doc.
    days_since_fix: int | None
    hidden_until_us: int | None  # set only when include_hidden and an exception covers it


@dataclass(frozen=True, slots=True)
class DeviceFinding:
    """One open finding of a device (the device page's tab)."""

    finding_id: int
    vuln_id: str
    summary: str
    severity: str
    cvss_score: float | None
    known_exploited: bool
    ecosystem: str
    package: str
    installed_version: str
    fixed_version: str | None
    feed: str
    confidence: str
    first_seen_us: int
    fix_available_us: int | None
    days_since_fix: int | None
    hidden_until_us: int | None


@dataclass(frozen=True, slots=True)
class CompliancePoint:
    """One day of the compliance chart: at the end of the day starting ``day_us``,
    ``compliant`` of ``devices`` PCs had no known-exploited finding older than the
    threshold."""

    day_us: int
    devices: int
    compliant: int

    @property
    def share(self) -> float:
        return 1.0 if self.devices == 0 else self.compliant / self.devices


@dataclass(frozen=True, slots=True)
class FeedStatus:
    kind: str
    last_ok_us: int | None
    source: str | None
    records: int | None
    sha256: str | None
    stale: bool  # never imported, or last good import older than stale_days
    last_error_us: int | None  # a failed import after the last good one
    last_error: str | None


@dataclass(frozen=True, slots=True)
class VulnException:
    id: int
    vuln_id: str
    device_id: str | None
    group_id: int | None
    package: str | None
    reason: str
    created_us: int
    expires_us: int
    created_by: str

    def active(self, now_us: int) -> bool:
        return self.expires_us > now_us


def _days(now_us: int, since_us: int | None) -> int | None:
    return None if since_us is None else max(0, (now_us - since_us) // DAY_US)


def _covering_exception(now_us: int) -> sa.Select[tuple[Any]]:
    """The unexpired exceptions that cover the current vuln_findings row (correlated;
    the query must join devices)."""
    return sa.select(sa.func.max(vuln_exceptions.c.expires_us)).where(
        vuln_exceptions.c.vuln_id == vuln_findings.c.vuln_id,
        vuln_exceptions.c.expires_us > now_us,
        vuln_exceptions.c.created_us <= now_us,
        sa.or_(
            vuln_exceptions.c.package.is_(None),
            vuln_exceptions.c.package == vuln_findings.c.package,
        ),
        sa.or_(
            vuln_exceptions.c.device_id == vuln_findings.c.device_id,
            vuln_exceptions.c.group_id == devices.c.group_id,
        ),
    )


def _visible(scope: Scope, now_us: int) -> list[sa.ColumnElement[bool]]:
    """Open findings of live devices in scope that no exception hides."""
    return [
        vuln_findings.c.resolved_us.is_(None),
        devices.c.revoked_us.is_(None),
        scope.device_filter(),
        _covering_exception(now_us).scalar_subquery().is_(None),
    ]


def _aliases(conn: sa.Connection, ids: list[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {i: [] for i in ids}
    for chunk in range(0, len(ids), 500):
        rows = conn.execute(
            sa.select(vuln_aliases.c.vuln_id, vuln_aliases.c.alias)
            .where(vuln_aliases.c.vuln_id.in_(ids[chunk : chunk + 500]))
            .order_by(vuln_aliases.c.vuln_id, vuln_aliases.c.alias)
        )
        for row in rows:
            if row.alias != row.vuln_id:
                out[row.vuln_id].append(row.alias)
    return {k: tuple(v) for k, v in out.items()}


def list_vulnerabilities(
    engine: sa.Engine,
    scope: Scope,
    *,
    now_us: int,
    search: str = "",
    known_exploited_only: bool = False,
    severity: str = "",
    sort: str = "-exposed",
    limit: int = 50,
    offset: int = 0,
) -> VulnList:
    """The vulnerabilities that at least one device in scope is exposed to now, with
    the number of exposed devices, one page of them and the total.

    ``search`` matches the id, any alias (a CVE id) or the summary, case-insensitively.
    ``sort`` is one of VULN_SORTS ("-" descending); ties are broken by id. Unknown
    sorts fall back to "-exposed".
    """
    exposed = (
        sa.select(
            vuln_findings.c.vuln_id.label("vuln_id"),
            sa.func.count(sa.distinct(vuln_findings.c.device_id)).label("exposed"),
            sa.func.min(vuln_findings.c.fix_available_us).label("fix_us"),
        )
        .select_from(vuln_findings.join(devices, devices.c.id == vuln_findings.c.device_id))
        .where(*_visible(scope, now_us))
        .group_by(vuln_findings.c.vuln_id)
        .subquery("exposed")
    )
    where: list[sa.ColumnElement[bool]] = []
    if known_exploited_only:
        where.append(vulnerabilities.c.known_exploited.is_(True))
    if severity:  # one of the ratings (CRITICAL ... NONE, "" unknown is not a filter)
        where.append(vulnerabilities.c.severity == severity)
    if search.strip():
        pattern = f"%{_escape_like(search.strip())}%"
        where.append(
            sa.or_(
                vulnerabilities.c.id.ilike(pattern, escape="\\"),
                vulnerabilities.c.summary.ilike(pattern, escape="\\"),
                sa.select(vuln_aliases.c.alias)
                .where(
                    vuln_aliases.c.vuln_id == vulnerabilities.c.id,
                    vuln_aliases.c.alias.ilike(pattern, escape="\\"),
                )
                .exists(),
            )
        )
    base = vulnerabilities.join(exposed, exposed.c.vuln_id == vulnerabilities.c.id)
    orders: dict[str, tuple[sa.ColumnElement[Any], ...]] = {
        "exposed": (exposed.c.exposed.asc(), vulnerabilities.c.id.asc()),
        "-exposed": (exposed.c.exposed.desc(), vulnerabilities.c.id.asc()),
        "cvss": (vulnerabilities.c.cvss_score.asc().nulls_first(), vulnerabilities.c.id.asc()),
        "-cvss": (vulnerabilities.c.cvss_score.desc().nulls_last(), vulnerabilities.c.id.asc()),
        "id": (vulnerabilities.c.id.asc(),),
        "-id": (vulnerabilities.c.id.desc(),),
        "fix": (exposed.c.fix_us.asc().nulls_last(), vulnerabilities.c.id.asc()),
        "-fix": (exposed.c.fix_us.desc().nulls_first(), vulnerabilities.c.id.asc()),
    }
    order = orders.get(sort, orders["-exposed"])
    with engine.connect() as conn:
        total = int(
            conn.execute(sa.select(sa.func.count()).select_from(base).where(*where)).scalar_one()
        )
        rows = conn.execute(
            sa.select(
                vulnerabilities.c.id,
                vulnerabilities.c.summary,
                vulnerabilities.c.severity,
                vulnerabilities.c.cvss_score,
                vulnerabilities.c.known_exploited,
                vulnerabilities.c.kev_added_us,
                vulnerabilities.c.published_us,
                exposed.c.fix_us,
                exposed.c.exposed,
            )
            .select_from(base)
            .where(*where)
            .order_by(*order)
            .limit(max(1, limit))
            .offset(max(0, offset))
        ).all()
        aliases = _aliases(conn, [r.id for r in rows])
    items = [
        VulnSummary(
            id=r.id,
            summary=r.summary,
            severity=r.severity,
            cvss_score=r.cvss_score,
            known_exploited=bool(r.known_exploited),
            kev_added_us=r.kev_added_us,
            published_us=r.published_us,
            fix_available_us=r.fix_us,
            exposed_devices=int(r.exposed),
            aliases=aliases[r.id],
        )
        for r in rows
    ]
    return VulnList(items, total)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def get_vulnerability(engine: sa.Engine, vuln_id: str) -> VulnDetail | None:
    """One vulnerability with its aliases and KEV entry; None when unknown.
    (Vulnerabilities are public data: no scope. Exposure queries take one.)"""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(vulnerabilities).where(vulnerabilities.c.id == vuln_id)
        ).first()
        if row is None:
            return None
        aliases = _aliases(conn, [vuln_id])[vuln_id]
        kev = conn.execute(
            sa.select(kev_entries)
            .where(kev_entries.c.cve_id.in_([vuln_id, *aliases]))
            .order_by(kev_entries.c.date_added_us)
        ).first()
    return VulnDetail(
        id=row.id,
        feed=row.feed,
        summary=row.summary,
        severity=row.severity,
        cvss_score=row.cvss_score,
        cvss_vector=row.cvss_vector,
        published_us=row.published_us,
        modified_us=row.modified_us,
        known_exploited=bool(row.known_exploited),
        kev_added_us=row.kev_added_us,
        kev_due_us=None if kev is None else kev.due_date_us,
        kev_ransomware=None if kev is None else kev.ransomware,
        kev_vendor_product=None if kev is None else f"{kev.vendor} {kev.product}",
        aliases=aliases,
    )


def exposed_devices(
    engine: sa.Engine,
    scope: Scope,
    vuln_id: str,
    *,
    now_us: int,
    include_hidden: bool = False,
    limit: int = 500,
    offset: int = 0,
) -> list[ExposedDevice]:
    """The devices in scope with an open finding of ``vuln_id``, longest exposed since
    the fix first, then by hostname. Hidden findings only with ``include_hidden``
    (then ``hidden_until_us`` says until when)."""
    hidden = _covering_exception(now_us).scalar_subquery()
    where: list[sa.ColumnElement[bool]] = [
        vuln_findings.c.vuln_id == vuln_id,
        vuln_findings.c.resolved_us.is_(None),
        devices.c.revoked_us.is_(None),
        scope.device_filter(),
    ]
    if not include_hidden:
        where.append(hidden.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                vuln_findings,
                devices.c.hostname,
                devices.c.group_id,
                hidden.label("hidden_until"),
            )
            .select_from(vuln_findings.join(devices, devices.c.id == vuln_findings.c.device_id))
            .where(*where)
            .order_by(
                vuln_findings.c.fix_available_us.asc().nulls_last(),
                devices.c.hostname,
                vuln_findings.c.package,
            )
            .limit(max(1, limit))
            .offset(max(0, offset))
        ).all()
    return [
        ExposedDevice(
            device_id=r.device_id,
            hostname=r.hostname,
            group_id=r.group_id,
            package=r.package,
            installed_version=r.installed_version,
            fixed_version=r.fixed_version,
            confidence=r.confidence,
            first_seen_us=r.first_seen_us,
            fix_available_us=r.fix_available_us,
            days_since_fix=_days(now_us, r.fix_available_us),
            hidden_until_us=r.hidden_until,
        )
        for r in rows
    ]


def device_findings(
    engine: sa.Engine,
    scope: Scope,
    device_id: str,
    *,
    now_us: int,
    include_hidden: bool = False,
) -> list[DeviceFinding]:
    """A device's open findings (known-exploited first, then by CVSS score, highest
    first); empty when the device is not in scope."""
    hidden = _covering_exception(now_us).scalar_subquery()
    where: list[sa.ColumnElement[bool]] = [
        vuln_findings.c.device_id == device_id,
        vuln_findings.c.resolved_us.is_(None),
        scope.device_filter(),
    ]
    if not include_hidden:
        where.append(hidden.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                vuln_findings,
                vulnerabilities.c.summary,
                vulnerabilities.c.severity,
                vulnerabilities.c.cvss_score,
                vulnerabilities.c.known_exploited,
                hidden.label("hidden_until"),
            )
            .select_from(
                vuln_findings.join(devices, devices.c.id == vuln_findings.c.device_id).join(
                    vulnerabilities, vulnerabilities.c.id == vuln_findings.c.vuln_id
                )
            )
            .where(*where)
            .order_by(
                vulnerabilities.c.known_exploited.desc(),
                vulnerabilities.c.cvss_score.desc().nulls_last(),
                vuln_findings.c.vuln_id,
                vuln_findings.c.package,
            )
        ).all()
    return [
        DeviceFinding(
            finding_id=r.id,
            vuln_id=r.vuln_id,
            summary=r.summary,
            severity=r.severity,
            cvss_score=r.cvss_score,
            known_exploited=bool(r.known_exploited),
            ecosystem=r.ecosystem,
            package=r.package,
            installed_version=r.installed_version,
            fixed_version=r.fixed_version,
            feed=r.feed,
            confidence=r.confidence,
            first_seen_us=r.first_seen_us,
            fix_available_us=r.fix_available_us,
            days_since_fix=_days(now_us, r.fix_available_us),
            hidden_until_us=r.hidden_until,
        )
        for r in rows
    ]


def compliance_series(
    engine: sa.Engine,
    scope: Scope,
    *,
    now_us: int,
    days: int = 30,
    max_age_days: int = 14,
) -> list[CompliancePoint]:
    """Fleet patch compliance for the last ``days`` UTC days (oldest first, today last).

    At the end of each day (``now_us`` for today) a device counts if it was enrolled
    by then and not revoked; it is compliant unless it had a finding of a
    known-exploited vulnerability that was open then and older than ``max_age_days``
    — age counted from the fix's availability (``fix_available_us``), or from when
    Sekimori first saw the finding when no fix exists — and that no exception
    covered at that moment.
    """
    today = now_us - now_us % DAY_US
    starts = [today - DAY_US * i for i in range(days - 1, -1, -1)]
    ends = [min(s + DAY_US, now_us) for s in starts]
    max_age = max_age_days * DAY_US
    with engine.connect() as conn:
        fleet = conn.execute(
            sa.select(devices.c.enrolled_us, devices.c.revoked_us).where(scope.device_filter())
        ).all()
        findings = conn.execute(
            sa.select(
                vuln_findings.c.device_id,
                vuln_findings.c.vuln_id,
                vuln_findings.c.package,
                vuln_findings.c.first_seen_us,
                vuln_findings.c.fix_available_us,
                vuln_findings.c.resolved_us,
                devices.c.group_id,
                devices.c.enrolled_us,
                devices.c.revoked_us,
            )
            .select_from(
                vuln_findings.join(devices, devices.c.id == vuln_findings.c.device_id).join(
                    vulnerabilities, vulnerabilities.c.id == vuln_findings.c.vuln_id
                )
            )
            .where(
                vulnerabilities.c.known_exploited.is_(True),
                scope.device_filter(),
                sa.or_(
                    vuln_findings.c.resolved_us.is_(None), vuln_findings.c.resolved_us > starts[0]
                ),
            )
        ).all()
        # Exceptions are few (each is an administrator's decision): all of them.
        exceptions = conn.execute(sa.select(vuln_exceptions)).all()
    # Devices alive at a moment = enrolled by then - revoked by then (a device is
    # revoked after its enrollment): two bisections per day instead of a pass over
    # the fleet's rows (30 days x 20,000 rows took seconds).
    enrolled = sorted(e for e, _ in fleet)
    revoked = sorted(r for _, r in fleet if r is not None)
    points: list[CompliancePoint] = []
    for start, end in zip(starts, ends, strict=True):
        alive = bisect.bisect_right(enrolled, end) - bisect.bisect_right(revoked, end)
        failing: set[str] = set()
        for f in findings:
            if f.enrolled_us > end or f.device_id in failing:
                continue
            if f.revoked_us is not None and f.revoked_us <= end:
                continue
            if f.first_seen_us > end or (f.resolved_us is not None and f.resolved_us <= end):
                continue
            since = f.fix_available_us if f.fix_available_us is not None else f.first_seen_us
            if end - since <= max_age:
                continue
            if any(
                e.vuln_id == f.vuln_id
                and e.created_us <= end < e.expires_us
                and (e.package is None or e.package == f.package)
                and (e.device_id == f.device_id or e.group_id == f.group_id)
                for e in exceptions
            ):
                continue
            failing.add(f.device_id)
        points.append(CompliancePoint(start, alive, alive - len(failing)))
    return points


def feed_status(engine: sa.Engine, *, now_us: int, stale_days: float = 7.0) -> list[FeedStatus]:
    """The last good import of each feed kind (osv, kev, nvd), whether it is stale
    (never imported, or older than ``stale_days``), and a failure since, if any."""
    out: list[FeedStatus] = []
    with engine.connect() as conn:
        for kind in FEED_KINDS:
            ok = conn.execute(
                sa.select(vuln_feed_imports)
                .where(vuln_feed_imports.c.kind == kind, vuln_feed_imports.c.status == "ok")
                .order_by(vuln_feed_imports.c.imported_us.desc(), vuln_feed_imports.c.id.desc())
                .limit(1)
            ).first()
            failed = conn.execute(
                sa.select(vuln_feed_imports)
                .where(
                    vuln_feed_imports.c.kind == kind,
                    vuln_feed_imports.c.status == "failed",
                    vuln_feed_imports.c.id > (0 if ok is None else ok.id),
                )
                .order_by(vuln_feed_imports.c.id.desc())
                .limit(1)
            ).first()
            out.append(
                FeedStatus(
                    kind=kind,
                    last_ok_us=None if ok is None else ok.imported_us,
                    source=None if ok is None else ok.source,
                    records=None if ok is None else ok.records,
                    sha256=None if ok is None else ok.sha256,
                    stale=ok is None or now_us - ok.imported_us > stale_days * DAY_US,
                    last_error_us=None if failed is None else failed.imported_us,
                    last_error=None if failed is None else failed.message,
                )
            )
    return out


# --- exceptions (accepted risk) -------------------------------------------------------


def _exception(row: sa.Row[Any]) -> VulnException:
    return VulnException(
        id=row.id,
        vuln_id=row.vuln_id,
        device_id=row.device_id,
        group_id=row.group_id,
        package=row.package,
        reason=row.reason,
        created_us=row.created_us,
        expires_us=row.expires_us,
        created_by=row.created_by,
    )


def _exception_scope(scope: Scope) -> sa.ColumnElement[bool]:
    in_scope_device = vuln_exceptions.c.device_id.in_(scope.device_ids())
    if scope.all_groups:
        return sa.true()
    return sa.or_(scope.device_filter(vuln_exceptions.c.group_id), in_scope_device)


def list_exceptions(
    engine: sa.Engine,
    scope: Scope,
    *,
    now_us: int,
    vuln_id: str | None = None,
    include_expired: bool = False,
) -> list[VulnException]:
    """Exceptions whose device or group is in scope, newest first; unexpired ones only
    unless ``include_expired``; of one vulnerability when ``vuln_id`` is given."""
    where = [_exception_scope(scope)]
    if vuln_id is not None:
        where.append(vuln_exceptions.c.vuln_id == vuln_id)
    if not include_expired:
        where.append(vuln_exceptions.c.expires_us > now_us)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(vuln_exceptions).where(*where).order_by(vuln_exceptions.c.id.desc())
        ).all()
    return [_exception(r) for r in rows]


def get_exception(engine: sa.Engine, scope: Scope, exception_id: int) -> VulnException | None:
    """One exception if its device or group is in scope."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(vuln_exceptions).where(
                vuln_exceptions.c.id == exception_id, _exception_scope(scope)
            )
        ).first()
    return None if row is None else _exception(row)


def create_exception(
    engine: sa.Engine,
    *,
    vuln_id: str,
    reason: str,
    expires_us: int,
    created_by: str,
    now_us: int,
    device_id: str | None = None,
    group_id: int | None = None,
    package: str | None = None,
) -> int:
    """Accept ``vuln_id`` on one device or on a group's devices until ``expires_us``;
    returns the new exception's id. Raises ValueError unless exactly one of
    ``device_id``/``group_id`` is given, the reason is non-empty and the expiry is in
    the future. (The caller checks the user may act on that device or group.)"""
    if (device_id is None) == (group_id is None):
        raise ValueError("an exception names exactly one of a device or a group")
    if not reason.strip():
        raise ValueError("an exception needs a reason")
    if expires_us <= now_us:
        raise ValueError("an exception must expire in the future")
    with engine.begin() as conn:
        result = conn.execute(
            sa.insert(vuln_exceptions).values(
                vuln_id=vuln_id,
                device_id=device_id,
                group_id=group_id,
                package=package or None,
                reason=reason.strip(),
                created_us=now_us,
                expires_us=expires_us,
                created_by=created_by,
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # noqa: S101 - an INSERT returns its key
        return int(key[0])


def update_exception(
    engine: sa.Engine,
    scope: Scope,
    exception_id: int,
    *,
    now_us: int,
    reason: str | None = None,
    expires_us: int | None = None,
) -> bool:
    """Change an exception's reason and/or expiry (an expiry at or before now ends it);
    False when it does not exist or is out of scope."""
    values: dict[str, object] = {}
    if reason is not None:
        if not reason.strip():
            raise ValueError("an exception needs a reason")
        values["reason"] = reason.strip()
    if expires_us is not None:
        values["expires_us"] = max(expires_us, now_us)
    if not values:
        return get_exception(engine, scope, exception_id) is not None
    with engine.begin() as conn:
        return (
            conn.execute(
                sa.update(vuln_exceptions)
                .where(vuln_exceptions.c.id == exception_id, _exception_scope(scope))
                .values(**values)
            ).rowcount
            == 1
        )


def delete_exception(engine: sa.Engine, scope: Scope, exception_id: int) -> bool:
    """Remove an exception (its findings show again at once); False when it does not
    exist or is out of scope."""
    with engine.begin() as conn:
        return (
            conn.execute(
                sa.delete(vuln_exceptions).where(
                    vuln_exceptions.c.id == exception_id, _exception_scope(scope)
                )
            ).rowcount
            == 1
        )
