"""Versioned collection policies per device group, what each device applied, and the
retention purge that policies drive.

``save_policy`` appends version max+1 of a group's policy together with an audit
entry carrying the diff (one transaction); ``current_policy`` / ``policy_history``
read them back; ``record_applied`` notes the version an agent reports running, and
``devices_by_policy_version`` counts devices per group and version for the console.

``purge_expired`` deletes events older than their group's retention, in chunks of
``chunk`` rows per transaction so the ingest writer is never held up for long, and
records one audit entry with the counts. The hourly rollups (``usage_hourly``) keep
the counts of purged events: they are aggregates per group and hour with no
personal content (a web host or application name at most), and the dashboard's
history should not change when details expire.

Wiring (next session): the console's policy editor calls ``save_policy``; the
channel sends ``current_policy`` to agents on connect and on save, and calls
``record_applied`` when an agent acknowledges; a scheduled job calls
``purge_expired(engine, retention_by_group(engine), now_us())``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa

from sekimori.protocol.events import EVENT_KINDS
from sekimori.protocol.policy import RETENTION_DOMAINS, Policy
from sekimori.server.policies import diff_policies
from sekimori.server.store.audit import append_audit
from sekimori.server.store.schema import device_policy, devices, events, groups, policies
from sekimori.server.store.scope import Scope

__all__ = [
    "PolicyVersionCount",
    "StalePolicy",
    "StoredPolicy",
    "UnknownGroup",
    "current_policy",
    "devices_by_policy_version",
    "policy_history",
    "purge_expired",
    "record_applied",
    "retention_by_group",
    "save_policy",
]

_US_PER_DAY = 86_400_000_000
_SAVE_ATTEMPTS = 5


class UnknownGroup(LookupError):
    """No device group has this id."""


class StalePolicy(Exception):
    """The group's current version is not the one the editor started from: someone
    saved meanwhile. ``current`` is the version there is now (0: none)."""

    def __init__(self, current: int) -> None:
        self.current = current
        super().__init__(f"the group's policy is at version {current} now")


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    group_id: int
    version: int
    created_us: int
    created_by: str
    comment: str
    policy: Policy


@dataclass(frozen=True, slots=True)
class PolicyVersionCount:
    """How many (not revoked) devices of a group run ``version`` (``None``: none
    reported for this group yet); ``current`` is the group's newest version."""

    group_id: int
    version: int | None
    devices: int
    current: int | None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Policy)


def save_policy(
    engine: sa.Engine,
    group_id: int,
    policy: Policy,
    actor: str,
    *,
    comment: str = "",
    client_ip: str = "",
    now_us: int,
    expected_version: int | None = None,
) -> int:
    """Store ``policy`` as the group's next version and return that version.

    Race-safe: the group row is written first, which serialises saves of one group
    (SQLite's write lock, PostgreSQL's row lock), and a primary-key clash is retried.
    The audit entry ("policy.save", with the diff) commits with the version.
    ``expected_version`` (0: the group has none yet) guards against lost updates: the
    console's editor passes the version it showed, and a save on top of another is
    refused. Raises UnknownGroup, StalePolicy.
    """
    for attempt in range(_SAVE_ATTEMPTS):
        try:
            with engine.begin() as conn:
                return _save(
                    conn,
                    group_id=group_id,
                    policy=policy,
                    actor=actor,
                    comment=comment,
                    client_ip=client_ip,
                    now_us=now_us,
                    expected_version=expected_version,
                )
        except sa.exc.IntegrityError:
            if attempt == _SAVE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _save(
    conn: sa.Connection,
    *,
    group_id: int,
    policy: Policy,
    actor: str,
    comment: str,
    client_ip: str,
    now_us: int,
    expected_version: int | None,
) -> int:
    locked = conn.execute(
        sa.update(groups).where(groups.c.id == group_id).values(name=groups.c.name)
    ).rowcount
    if locked == 0:
        raise UnknownGroup(group_id)
    previous = _current(conn, group_id)
    current = 0 if previous is None else previous.version
    if expected_version is not None and expected_version != current:
        raise StalePolicy(current)
    version = current + 1
    conn.execute(
        sa.insert(policies).values(
            group_id=group_id,
            version=version,
            created_us=now_us,
            created_by=actor[:128],
            document=_encoder.encode(policy).decode("utf-8"),
            comment=comment,
        )
    )
    changes = diff_policies(previous.policy if previous else None, policy)
    append_audit(
        conn,
        actor=actor,
        action="policy.save",
        target=f"group:{group_id}",
        client_ip=client_ip,
        detail={
            "version": version,
            "comment": comment,
            "changes": [{"path": c.path, "old": c.old, "new": c.new} for c in changes],
        },
    )
    return version


def _row_to_stored(row: sa.Row[Any, Any, Any, Any, Any, Any]) -> StoredPolicy:
    return StoredPolicy(
        group_id=int(row.group_id),
        version=int(row.version),
        created_us=int(row.created_us),
        created_by=str(row.created_by),
        comment=str(row.comment),
        policy=_decoder.decode(row.document),
    )


_COLUMNS = (
    policies.c.group_id,
    policies.c.version,
    policies.c.created_us,
    policies.c.created_by,
    policies.c.comment,
    policies.c.document,
)


def _current(conn: sa.Connection, group_id: int) -> StoredPolicy | None:
    row = conn.execute(
        sa.select(*_COLUMNS)
        .where(policies.c.group_id == group_id)
        .order_by(policies.c.version.desc())
        .limit(1)
    ).first()
    return None if row is None else _row_to_stored(row)


def current_policy(engine: sa.Engine, group_id: int) -> StoredPolicy | None:
    """The group's newest policy version, or None if it never had one."""
    with engine.connect() as conn:
        return _current(conn, group_id)


def policy_history(engine: sa.Engine, group_id: int, *, limit: int = 100) -> list[StoredPolicy]:
    """The group's policy versions, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*_COLUMNS)
            .where(policies.c.group_id == group_id)
            .order_by(policies.c.version.desc())
            .limit(limit)
        ).all()
    return [_row_to_stored(row) for row in rows]


def record_applied(engine: sa.Engine, device_id: str, version: int, *, now_us: int) -> bool:
    """Note that the device runs its group's policy ``version``. Returns False (and
    records nothing) for an unknown device."""
    with engine.begin() as conn:
        group_id = conn.execute(
            sa.select(devices.c.group_id).where(devices.c.id == device_id)
        ).scalar()
        if group_id is None:
            return False
        values = {"group_id": int(group_id), "version": version, "reported_us": now_us}
        updated = conn.execute(
            sa.update(device_policy).where(device_policy.c.device_id == device_id).values(values)
        ).rowcount
        if updated == 0:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(device_policy).values(device_id=device_id, **values))
            except sa.exc.IntegrityError:  # reported concurrently: the later report wins
                conn.execute(
                    sa.update(device_policy)
                    .where(device_policy.c.device_id == device_id)
                    .values(values)
                )
    return True


def devices_by_policy_version(engine: sa.Engine, scope: Scope) -> list[PolicyVersionCount]:
    """Per group in scope and applied version, the number of devices (revoked ones
    left out); a version reported under another group (the device moved) counts as
    none. Ordered by group, then version (none first)."""
    applied = sa.case(
        (device_policy.c.group_id == devices.c.group_id, device_policy.c.version),
        else_=sa.null(),
    ).label("version")
    newest = (
        sa.select(policies.c.group_id, sa.func.max(policies.c.version).label("current"))
        .group_by(policies.c.group_id)
        .subquery()
    )
    counted = (
        sa.select(devices.c.group_id, applied, sa.func.count().label("n"))
        .select_from(devices.outerjoin(device_policy, device_policy.c.device_id == devices.c.id))
        .where(devices.c.revoked_us.is_(None), scope.device_filter())
        .group_by(devices.c.group_id, applied)
        .subquery()
    )
    query = (
        sa.select(counted.c.group_id, counted.c.version, counted.c.n, newest.c.current)
        .select_from(counted.outerjoin(newest, newest.c.group_id == counted.c.group_id))
        .order_by(counted.c.group_id, counted.c.version.is_not(None), counted.c.version)
    )
    with engine.connect() as conn:
        return [
            PolicyVersionCount(
                group_id=int(row.group_id),
                version=None if row.version is None else int(row.version),
                devices=int(row.n),
                current=None if row.current is None else int(row.current),
            )
            for row in conn.execute(query)
        ]


def retention_by_group(engine: sa.Engine) -> dict[tuple[int, str], int]:
    """The retention limits of every group's current policy, as ``purge_expired``
    takes them: ``{(group_id, kind_domain): days}``."""
    newest = (
        sa.select(policies.c.group_id, sa.func.max(policies.c.version).label("version"))
        .group_by(policies.c.group_id)
        .subquery()
    )
    query = sa.select(policies.c.group_id, policies.c.document).join(
        newest,
        sa.and_(newest.c.group_id == policies.c.group_id, newest.c.version == policies.c.version),
    )
    out: dict[tuple[int, str], int] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            for domain, days in _decoder.decode(row.document).retention_days.as_dict().items():
                out[(int(row.group_id), domain)] = days
    return out


def _kinds_of(domain: str) -> list[str]:
    if domain not in RETENTION_DOMAINS:
        raise ValueError(f"not an event kind domain: {domain!r}")
    return sorted(kind for kind in EVENT_KINDS if kind.partition(".")[0] == domain)


def purge_expired(
    engine: sa.Engine,
    retention: Mapping[tuple[int, str], int],
    now_us: int,
    *,
    chunk: int = 10_000,
    actor: str = "system:retention",
) -> dict[tuple[int, str], int]:
    """Delete the events of each ``(group_id, kind_domain)`` older than its days, at
    most ``chunk`` rows per transaction. Returns the rows deleted per key (keys with
    none left out) and, when anything was deleted, appends one "retention.purge"
    audit entry with the counts. Raises ValueError for an unknown domain or days < 1.
    """
    plan = []
    for (group_id, domain), days in sorted(retention.items()):
        if days < 1:
            raise ValueError(f"retention of {domain!r} in group {group_id}: days must be >= 1")
        plan.append((group_id, domain, _kinds_of(domain), now_us - days * _US_PER_DAY))
    counts: dict[tuple[int, str], int] = {}
    for group_id, domain, kinds, cutoff in plan:
        in_group = sa.select(devices.c.id).where(devices.c.group_id == group_id)
        expired = (
            sa.select(events.c.device_id, events.c.seq)
            .where(
                events.c.kind.in_(kinds),
                events.c.time_us < cutoff,
                events.c.device_id.in_(in_group),
            )
            .limit(chunk)
        )
        total = 0
        while True:
            with engine.begin() as conn:
                keys = [(str(r.device_id), int(r.seq)) for r in conn.execute(expired)]
                if keys:
                    conn.execute(
                        sa.delete(events).where(
                            sa.tuple_(events.c.device_id, events.c.seq).in_(keys)
                        )
                    )
            total += len(keys)
            if len(keys) < chunk:
                break
        if total:
            counts[(group_id, domain)] = total
    if counts:
        append_audit(
            engine,
            actor=actor,
            action="retention.purge",
            detail={
                "before_us": now_us,
                "deleted": [
                    {"group_id": g, "domain": d, "days": retention[(g, d)], "events": n}
                    for (g, d), n in counts.items()
                ],
            },
        )
    return counts
