"""The vulnerability job's writes: each device's current packages and OS release,
and its findings.

Findings are kept two ways that give the same result (a test holds them to it):

* one device at a time (``sync_device_findings``): the job computes the device's
  findings in Python and this diffs them against its open findings;
* the whole fleet (``rematch_all``): the job puts the affected (ecosystem, package,
  version) tuples of every distinct installed version into ``vuln_hits``, and the
  join against ``device_packages`` and the diff against open findings run in SQL —
  millions of rows never pass through Python.

Either way a finding that is no longer found gets ``resolved_us`` (its history stays),
a new one is opened with ``first_seen_us`` = now, and one that persists keeps its row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Join

from sekimori.server.store.schema import (
    device_packages,
    devices,
    events,
    vuln_device_state,
    vuln_findings,
    vuln_hits,
)

__all__ = [
    "INVENTORY_KINDS",
    "DesiredFinding",
    "DeviceState",
    "FindingKey",
    "PackageRow",
    "advance_applied",
    "baseline",
    "delete_package",
    "device_match_keys",
    "device_state",
    "devices_with_inventory",
    "distinct_match_keys",
    "inventory_events",
    "pending_devices",
    "rematch_all",
    "replace_packages",
    "save_device_state",
    "set_device_release",
    "sync_device_findings",
    "upsert_package",
]

INVENTORY_KINDS = (
    "inventory.hardware",
    "inventory.software",
    "inventory.software_installed",
    "inventory.software_removed",
    "inventory.software_upgraded",
    "inventory.software_downgraded",
)
_SOFTWARE_KINDS = INVENTORY_KINDS[1:]

# (vuln_id, ecosystem, package)
FindingKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class PackageRow:
    manager: str
    name: str
    architecture: str
    version: str
    source: str
    source_version: str
    match: tuple[str, str, str] | None

    def values(self, device_id: str) -> dict[str, Any]:
        eco, pkg, ver = self.match if self.match is not None else (None, None, None)
        return {
            "device_id": device_id,
            "manager": self.manager[:16],
            "name": self.name[:255],
            "architecture": self.architecture[:32],
            "version": self.version[:255],
            "source": self.source[:255],
            "source_version": self.source_version[:255],
            "match_ecosystem": eco,
            "match_package": pkg,
            "match_version": ver,
        }


@dataclass(frozen=True, slots=True)
class DesiredFinding:
    installed_version: str
    fixed_version: str | None
    fix_available_us: int | None
    feed: str
    confidence: str


@dataclass(frozen=True, slots=True)
class DeviceState:
    device_id: str
    os_id: str
    os_version_id: str
    os_codename: str
    release_ecosystem: str
    applied_seq: int


# --- inventory -----------------------------------------------------------------------


def pending_devices(conn: sa.Connection) -> list[tuple[str, int, int | None]]:
    """(device_id, acked_seq, applied_seq or None) of devices with events the job has
    not looked at yet."""
    rows = conn.execute(
        sa.select(devices.c.id, devices.c.acked_seq, vuln_device_state.c.applied_seq)
        .select_from(
            devices.outerjoin(vuln_device_state, vuln_device_state.c.device_id == devices.c.id)
        )
        .where(
            sa.or_(
                vuln_device_state.c.device_id.is_(None),
                devices.c.acked_seq > vuln_device_state.c.applied_seq,
            )
        )
        .order_by(devices.c.id)
    ).all()
    return [
        (r.id, int(r.acked_seq), None if r.applied_seq is None else int(r.applied_seq))
        for r in rows
    ]


def devices_with_inventory(conn: sa.Connection, ranges: Sequence[tuple[str, int, int]]) -> set[str]:
    """Which of the devices have an inventory event in their (after, through] range:
    the others only sent activity, and the job just moves their mark."""
    found: set[str] = set()
    for start in range(0, len(ranges), 200):
        chunk = ranges[start : start + 200]
        # One primary-key range per device, OR-ed: both backends use the key for each.
        found.update(
            conn.execute(
                sa.select(events.c.device_id)
                .where(
                    events.c.kind.in_(INVENTORY_KINDS),
                    sa.or_(
                        *(
                            sa.and_(
                                events.c.device_id == device_id,
                                events.c.seq > after,
                                events.c.seq <= through,
                            )
                            for device_id, after, through in chunk
                        )
                    ),
                )
                .distinct()
            ).scalars()
        )
    return found


def advance_applied(conn: sa.Connection, marks: Sequence[tuple[str, int]], *, now_us: int) -> None:
    """Move the job's mark of devices whose new events held no inventory."""
    if marks:
        conn.execute(
            sa.update(vuln_device_state)
            .where(vuln_device_state.c.device_id == sa.bindparam("d"))
            .values(applied_seq=sa.bindparam("s"), updated_us=now_us),
            [{"d": device_id, "s": seq} for device_id, seq in marks],
        )


def baseline(conn: sa.Connection, device_id: str) -> tuple[int, str | None]:
    """For a device the job has never seen: the sequence number of its newest full
    software list (0 when none) and the payload of its newest hardware inventory —
    the events from there on make its current state."""
    snapshot = conn.execute(
        sa.select(sa.func.max(events.c.seq)).where(
            events.c.device_id == device_id, events.c.kind == "inventory.software"
        )
    ).scalar()
    hardware = conn.execute(
        sa.select(events.c.payload)
        .where(events.c.device_id == device_id, events.c.kind == "inventory.hardware")
        .order_by(events.c.seq.desc())
        .limit(1)
    ).scalar()
    return int(snapshot or 0), hardware


def inventory_events(
    conn: sa.Connection,
    device_id: str,
    after_seq: int,
    through_seq: int,
    *,
    software_only: bool = False,
) -> list[tuple[int, str, str]]:
    """(seq, kind, payload) of a device's inventory events in (after_seq, through_seq],
    in order."""
    kinds = _SOFTWARE_KINDS if software_only else INVENTORY_KINDS
    rows = conn.execute(
        sa.select(events.c.seq, events.c.kind, events.c.payload)
        .where(
            events.c.device_id == device_id,
            events.c.seq > after_seq,
            events.c.seq <= through_seq,
            events.c.kind.in_(kinds),
        )
        .order_by(events.c.seq)
    ).all()
    return [(int(r.seq), r.kind, r.payload) for r in rows]


def device_state(conn: sa.Connection, device_id: str) -> DeviceState | None:
    row = conn.execute(
        sa.select(vuln_device_state).where(vuln_device_state.c.device_id == device_id)
    ).first()
    if row is None:
        return None
    return DeviceState(
        row.device_id,
        row.os_id,
        row.os_version_id,
        row.os_codename,
        row.release_ecosystem,
        int(row.applied_seq),
    )


def save_device_state(conn: sa.Connection, state: DeviceState, *, now_us: int) -> None:
    values = {
        "os_id": state.os_id[:64],
        "os_version_id": state.os_version_id[:64],
        "os_codename": state.os_codename[:64],
        "release_ecosystem": state.release_ecosystem[:64],
        "applied_seq": state.applied_seq,
        "updated_us": now_us,
    }
    updated = conn.execute(
        sa.update(vuln_device_state)
        .where(vuln_device_state.c.device_id == state.device_id)
        .values(**values)
    ).rowcount
    if updated == 0:
        conn.execute(sa.insert(vuln_device_state).values(device_id=state.device_id, **values))


def replace_packages(conn: sa.Connection, device_id: str, rows: Sequence[PackageRow]) -> None:
    """A full software list: the device's packages become exactly ``rows``."""
    conn.execute(sa.delete(device_packages).where(device_packages.c.device_id == device_id))
    unique = {(r.manager, r.name, r.architecture): r for r in rows}
    if unique:
        conn.execute(sa.insert(device_packages), [r.values(device_id) for r in unique.values()])


def delete_package(
    conn: sa.Connection, device_id: str, manager: str, name: str, architecture: str
) -> None:
    conn.execute(
        sa.delete(device_packages).where(
            device_packages.c.device_id == device_id,
            device_packages.c.manager == manager,
            device_packages.c.name == name,
            device_packages.c.architecture == architecture,
        )
    )


def upsert_package(conn: sa.Connection, device_id: str, row: PackageRow) -> None:
    delete_package(conn, device_id, row.manager, row.name, row.architecture)
    conn.execute(sa.insert(device_packages).values(**row.values(device_id)))


def set_device_release(conn: sa.Connection, device_id: str, release: str) -> None:
    """A new OS release: the device's dpkg packages are matched under its ecosystem."""
    if release:
        conn.execute(
            sa.update(device_packages)
            .where(device_packages.c.device_id == device_id, device_packages.c.manager == "dpkg")
            .values(
                match_ecosystem=release,
                match_package=sa.case(
                    (device_packages.c.source == "", device_packages.c.name),
                    else_=device_packages.c.source,
                ),
                match_version=sa.case(
                    (device_packages.c.source_version == "", device_packages.c.version),
                    else_=device_packages.c.source_version,
                ),
            )
        )
    else:
        conn.execute(
            sa.update(device_packages)
            .where(device_packages.c.device_id == device_id, device_packages.c.manager == "dpkg")
            .values(match_ecosystem=None, match_package=None, match_version=None)
        )


def device_match_keys(conn: sa.Connection, device_id: str) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        sa.select(
            device_packages.c.match_ecosystem,
            device_packages.c.match_package,
            device_packages.c.match_version,
        )
        .where(
            device_packages.c.device_id == device_id,
            device_packages.c.match_ecosystem.is_not(None),
        )
        .distinct()
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def distinct_match_keys(conn: sa.Connection) -> list[tuple[str, str, str]]:
    """Every (ecosystem, package, version) installed somewhere."""
    rows = conn.execute(
        sa.select(
            device_packages.c.match_ecosystem,
            device_packages.c.match_package,
            device_packages.c.match_version,
        )
        .where(device_packages.c.match_ecosystem.is_not(None))
        .distinct()
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


# --- findings --------------------------------------------------------------------------


def sync_device_findings(
    conn: sa.Connection, device_id: str, desired: dict[FindingKey, DesiredFinding], *, now_us: int
) -> tuple[int, int]:
    """Make the device's open findings equal ``desired``; returns (opened, resolved)."""
    open_rows = conn.execute(
        sa.select(
            vuln_findings.c.id,
            vuln_findings.c.vuln_id,
            vuln_findings.c.ecosystem,
            vuln_findings.c.package,
            vuln_findings.c.installed_version,
            vuln_findings.c.fixed_version,
            vuln_findings.c.fix_available_us,
        ).where(vuln_findings.c.device_id == device_id, vuln_findings.c.resolved_us.is_(None))
    ).all()
    current = {(r.vuln_id, r.ecosystem, r.package): r for r in open_rows}
    gone = [r.id for key, r in current.items() if key not in desired]
    for start in range(0, len(gone), 500):
        conn.execute(
            sa.update(vuln_findings)
            .where(vuln_findings.c.id.in_(gone[start : start + 500]))
            .values(resolved_us=now_us)
        )
    for key, want in desired.items():
        row = current.get(key)
        if row is not None and (
            row.installed_version != want.installed_version
            or row.fixed_version != want.fixed_version
            or row.fix_available_us != want.fix_available_us
        ):
            conn.execute(
                sa.update(vuln_findings)
                .where(vuln_findings.c.id == row.id)
                .values(
                    installed_version=want.installed_version,
                    fixed_version=want.fixed_version,
                    fix_available_us=want.fix_available_us,
                )
            )
    new = [
        {
            "device_id": device_id,
            "vuln_id": key[0],
            "ecosystem": key[1],
            "package": key[2],
            "installed_version": want.installed_version,
            "fixed_version": want.fixed_version,
            "feed": want.feed,
            "confidence": want.confidence,
            "first_seen_us": now_us,
            "fix_available_us": want.fix_available_us,
            "resolved_us": None,
        }
        for key, want in desired.items()
        if key not in current
    ]
    if new:
        conn.execute(sa.insert(vuln_findings), new)
    return len(new), len(gone)


class _DrivingJoin(Join):
    """An inner join whose left side drives it: on SQLite a CROSS JOIN, which its
    planner never reorders — the few affected tuples of ``vuln_hits`` look up their
    devices in the covering ``ix_device_packages_match`` instead of a walk through all
    of ``device_packages``. Other databases get a plain JOIN."""

    inherit_cache = True


@compiles(_DrivingJoin, "sqlite")
def _sqlite_driving_join(element: _DrivingJoin, compiler: SQLCompiler, **kw: Any) -> str:
    text: str = compiler.visit_join(element, **kw)  # type: ignore[no-untyped-call]
    return text.replace(" JOIN ", " CROSS JOIN ", 1)


_HIT_KEY = ("ecosystem", "package", "version", "vuln_id")
HitKey = tuple[str, str, str, str]


def _hit_key(row: dict[str, Any]) -> HitKey:
    return (row["ecosystem"], row["package"], row["version"], row["vuln_id"])


def rematch_all(
    conn: sa.Connection, hits: Iterable[dict[str, Any]], *, now_us: int
) -> tuple[int, int]:
    """Bring every device's findings in line with ``hits`` (rows for vuln_hits: the
    affected tuples among the installed ones); returns (opened, resolved). Run in one
    transaction, after every device's own changes were synced.

    ``vuln_hits`` keeps the previous run's tuples, so only the difference is applied:
    a tuple no longer affected resolves its open findings, a tuple whose fix moved
    updates them, a new tuple opens findings on the devices that have that version —
    each through an index, never a scan of all findings. With no open finding at all
    (the first run) the findings are written by one INSERT … SELECT join, with the
    table's two secondary indexes dropped before and re-created after it.
    """
    h, f, dp = vuln_hits, vuln_findings, device_packages
    new = {_hit_key(row): row for row in hits}
    old: dict[HitKey, dict[str, Any]] = {
        (r.ecosystem, r.package, r.version, r.vuln_id): dict(r._mapping)
        for r in conn.execute(sa.select(h)).all()
    }
    removed = [k for k in old if k not in new]
    added = [k for k in new if k not in old]
    changed = [
        k
        for k, row in new.items()
        if k in old and (old[k]["fixed"], old[k]["fixed_us"]) != (row["fixed"], row["fixed_us"])
    ]
    keyed: dict[str, sa.BindParameter[Any]] = {name: sa.bindparam(f"k_{name}") for name in _HIT_KEY}

    def params(
        keys: list[HitKey], extra: dict[HitKey, dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        out = []
        for key in keys:
            item: dict[str, Any] = {
                f"k_{name}": value for name, value in zip(_HIT_KEY, key, strict=True)
            }
            if extra is not None:
                item.update(extra.get(key, {}))
            out.append(item)
        return out

    if removed:
        conn.execute(
            sa.delete(h).where(*(h.c[name] == keyed[name] for name in _HIT_KEY)), params(removed)
        )
    if changed:
        conn.execute(
            sa.update(h)
            .where(*(h.c[name] == keyed[name] for name in _HIT_KEY))
            .values(fixed=sa.bindparam("n_fixed"), fixed_us=sa.bindparam("n_fixed_us")),
            params(
                changed,
                {
                    k: {"n_fixed": new[k]["fixed"], "n_fixed_us": new[k]["fixed_us"]}
                    for k in changed
                },
            ),
        )
    for start in range(0, len(added), 5000):
        conn.execute(sa.insert(h), [new[k] for k in added[start : start + 5000]])

    finding_of_key = (
        f.c.resolved_us.is_(None),
        f.c.vuln_id == keyed["vuln_id"],
        f.c.ecosystem == keyed["ecosystem"],
        f.c.package == keyed["package"],
        f.c.installed_version == keyed["version"],
    )
    resolved = 0
    if removed:
        resolved = conn.execute(
            sa.update(f).where(*finding_of_key).values(resolved_us=now_us), params(removed)
        ).rowcount
    if changed:
        conn.execute(
            sa.update(f)
            .where(*finding_of_key)
            .values(
                fixed_version=sa.bindparam("n_fixed"), fix_available_us=sa.bindparam("n_fixed_us")
            ),
            params(
                changed,
                {
                    k: {"n_fixed": new[k]["fixed"], "n_fixed_us": new[k]["fixed_us"]}
                    for k in changed
                },
            ),
        )
    if not added:
        return 0, int(resolved)
    columns = [
        "device_id",
        "vuln_id",
        "ecosystem",
        "package",
        "installed_version",
        "fixed_version",
        "feed",
        "confidence",
        "first_seen_us",
        "fix_available_us",
    ]
    any_open = conn.execute(sa.select(f.c.id).where(f.c.resolved_us.is_(None)).limit(1)).first()
    if any_open is None and not old:
        # First run: every finding is new; one join writes them all. Millions of rows
        # inserted one by one into the two secondary indexes cost random b-tree writes;
        # dropped and re-created (a sorted build) in the same transaction they cost a
        # fraction. The definitions are the schema's, so migrations and `alembic check`
        # stay true; a rollback brings them back as they were.
        joined = _DrivingJoin(
            h,
            dp,
            sa.and_(
                h.c.ecosystem == dp.c.match_ecosystem,
                h.c.package == dp.c.match_package,
                h.c.version == dp.c.match_version,
            ),
        )
        # Grouped: several binary packages of one source on a device, at the same or at
        # different source versions, make one finding (the least version and fix).
        rows = (
            sa.select(
                dp.c.device_id,
                h.c.vuln_id,
                h.c.ecosystem,
                h.c.package,
                sa.func.min(dp.c.match_version),
                sa.func.min(h.c.fixed),
                sa.func.min(h.c.feed),
                sa.func.min(h.c.confidence),
                sa.literal(now_us, sa.BigInteger),
                sa.func.min(h.c.fixed_us),
            )
            .select_from(joined)
            .group_by(dp.c.device_id, h.c.vuln_id, h.c.ecosystem, h.c.package)
        )
        secondary = sorted(f.indexes, key=lambda index: str(index.name))
        for index in secondary:
            index.drop(conn)
        # preserve_rowcount: psycopg's INSERT … SELECT reports -1 without it.
        opened = conn.execute(
            sa.insert(f).from_select(columns, rows), execution_options={"preserve_rowcount": True}
        ).rowcount
        for index in secondary:
            index.create(conn)
        return int(opened), int(resolved)
    # Later runs: per new tuple, the devices with that version and no open finding.
    already = (
        sa.select(sa.literal(1))
        .select_from(f)
        .where(
            f.c.device_id == dp.c.device_id,
            f.c.vuln_id == keyed["vuln_id"],
            f.c.ecosystem == keyed["ecosystem"],
            f.c.package == keyed["package"],
            f.c.resolved_us.is_(None),
        )
        .exists()
    )
    per_key = (
        sa.select(
            dp.c.device_id,
            # Typed casts: PostgreSQL cannot infer a parameter's type in a select list.
            sa.cast(keyed["vuln_id"], sa.String),
            sa.cast(keyed["ecosystem"], sa.String),
            sa.cast(keyed["package"], sa.String),
            sa.cast(keyed["version"], sa.String),
            sa.cast(sa.bindparam("n_fixed"), sa.String),
            sa.cast(sa.bindparam("n_feed"), sa.String),
            sa.cast(sa.bindparam("n_confidence"), sa.String),
            sa.literal(now_us, sa.BigInteger),
            sa.cast(sa.bindparam("n_fixed_us"), sa.BigInteger),
        )
        .where(
            dp.c.match_ecosystem == keyed["ecosystem"],
            dp.c.match_package == keyed["package"],
            dp.c.match_version == keyed["version"],
            ~already,
        )
        .distinct()
    )
    extra = {
        k: {
            "n_fixed": new[k]["fixed"],
            "n_fixed_us": new[k]["fixed_us"],
            "n_feed": new[k]["feed"],
            "n_confidence": new[k]["confidence"],
        }
        for k in added
    }
    opened = 0
    for start in range(0, len(added), 2000):
        chunk = added[start : start + 2000]
        for item in params(chunk, extra):
            # One statement per tuple: executemany cannot report rows per statement
            # on every driver, and the count is what the job logs.
            opened += conn.execute(
                sa.insert(f).from_select(columns, per_key),
                item,
                execution_options={"preserve_rowcount": True},
            ).rowcount
    return int(opened), int(resolved)
