"""The console's questions about the fleet: the paged, filtered device list and the
dashboard's counts — always within the asking user's scope, always in SQL.

"Online" is decided in SQL the same way as ``Device.online``: connected, not revoked,
and heard from within three heartbeats (plus a little slack), so a crashed server
cannot leave devices looking online. Callers pass ``now`` so one page shows one
consistent picture.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import sqlalchemy as sa

from sekimori.server.store.devices import DEVICE_COLUMNS, Device, device_from_row
from sekimori.server.store.schema import devices, events, groups, usage_hourly
from sekimori.server.store.scope import Scope

__all__ = [
    "PER_PAGE",
    "SORTS",
    "DeviceList",
    "DeviceQuery",
    "FilterChoices",
    "FleetSummary",
    "Status",
    "device_in_scope",
    "device_status",
    "events_per_hour",
    "filter_choices",
    "fleet_summary",
    "groups_in_scope",
    "latest_seen",
    "online_clause",
    "outdated_versions",
    "revoked_devices",
    "search_devices",
    "version_key",
]

PER_PAGE: Final = 50
HOUR_US: Final = 3_600_000_000

Status = Literal["online", "offline", "revoked"]

# Sort keys of the URL contract; each ends on the id so paging is stable.
SORTS: Final[dict[str, tuple[sa.ColumnElement[Any], ...]]] = {
    "hostname": (devices.c.hostname.asc(), devices.c.id.asc()),
    "-hostname": (devices.c.hostname.desc(), devices.c.id.desc()),
    "last_seen": (devices.c.last_seen_us.asc().nulls_first(), devices.c.id.asc()),
    "-last_seen": (devices.c.last_seen_us.desc().nulls_last(), devices.c.id.desc()),
    "group": (groups.c.name.asc(), devices.c.hostname.asc(), devices.c.id.asc()),
    "os": (devices.c.os.asc(), devices.c.os_version.asc(), devices.c.hostname.asc(), devices.c.id),
    "version": (devices.c.agent_version.asc(), devices.c.hostname.asc(), devices.c.id.asc()),
    "-enrolled": (devices.c.enrolled_us.desc(), devices.c.id.desc()),
}

_NUMERIC = re.compile(r"\d+(?:\.\d+)*")


def version_key(version: str) -> tuple[int, ...]:
    """A version's numbers for comparing ("0.10.0" > "0.9.1"; "1.0" == "1.0.0").
    Text that starts with no number sorts below every version."""
    found = _NUMERIC.match(version.strip().removeprefix("v"))
    if not found:
        return ()
    parts = [int(p) for p in found.group().split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def outdated_versions(versions: Iterable[str], minimum: str) -> list[str]:
    """The versions among ``versions`` below ``minimum``."""
    floor = version_key(minimum)
    return sorted(v for v in set(versions) if version_key(v) < floor)


def online_clause(now: int, heartbeat_seconds: float) -> sa.ColumnElement[bool]:
    """``Device.online`` as a WHERE clause."""
    cutoff = now - int(3 * heartbeat_seconds * 1_000_000) - 5_000_000
    return sa.and_(
        devices.c.connected.is_(True),
        devices.c.revoked_us.is_(None),
        devices.c.last_seen_us >= cutoff,
    )


def _status_clause(status: str, now: int, heartbeat_seconds: float) -> sa.ColumnElement[bool]:
    if status == "online":
        return online_clause(now, heartbeat_seconds)
    if status == "offline":
        return sa.and_(
            devices.c.revoked_us.is_(None), sa.not_(online_clause(now, heartbeat_seconds))
        )
    if status == "revoked":
        return devices.c.revoked_us.is_not(None)
    return sa.true()


def device_status(device: Device, now: int, heartbeat_seconds: float) -> Status:
    if device.revoked_us is not None:
        return "revoked"
    return "online" if device.online(now, heartbeat_seconds) else "offline"


def _select() -> sa.Select[tuple[object, ...]]:
    return sa.select(*DEVICE_COLUMNS)


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """The device list's search, as in the URL (empty strings: no filter)."""

    q: str = ""
    group: str = ""
    os: str = ""
    status: str = ""
    # An exact agent version, or "outdated" (below the minimum version).
    version: str = ""
    sort: str = "hostname"
    page: int = 1


@dataclass(frozen=True, slots=True)
class DeviceList:
    devices: list[Device]
    total: int
    page: int
    per_page: int = PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _where(
    query: DeviceQuery,
    scope: Scope,
    *,
    now: int,
    heartbeat_seconds: float,
    outdated: list[str],
) -> list[sa.ColumnElement[bool]]:
    where = [scope.device_filter()]
    text = query.q.strip()
    if text:
        where.append(
            sa.or_(
                devices.c.hostname.icontains(text, autoescape=True),
                devices.c.id.startswith(text.lower(), autoescape=True),
            )
        )
    if query.group:
        where.append(groups.c.name == query.group)
    if query.os:
        where.append(devices.c.os == query.os)
    if query.status:
        where.append(_status_clause(query.status, now, heartbeat_seconds))
    if query.version == "outdated":
        where.append(devices.c.agent_version.in_(outdated) if outdated else sa.false())
    elif query.version:
        where.append(devices.c.agent_version == query.version)
    return where


def search_devices(
    engine: sa.Engine,
    scope: Scope,
    query: DeviceQuery,
    *,
    now: int,
    heartbeat_seconds: float,
    minimum_version: str,
    per_page: int = PER_PAGE,
) -> DeviceList:
    """One page of the devices matching ``query`` within ``scope``, and how many match."""
    with engine.connect() as conn:
        outdated: list[str] = []
        if query.version == "outdated":
            outdated = outdated_versions(_versions(conn, scope), minimum_version)
        where = _where(
            query, scope, now=now, heartbeat_seconds=heartbeat_seconds, outdated=outdated
        )
        joined = devices.join(groups, groups.c.id == devices.c.group_id)
        total = int(
            conn.execute(sa.select(sa.func.count()).select_from(joined).where(*where)).scalar_one()
        )
        pages = max(1, -(-total // per_page))
        page = min(max(1, query.page), pages)
        rows = conn.execute(
            _select()
            .select_from(joined)
            .where(*where)
            .order_by(*SORTS.get(query.sort, SORTS["hostname"]))
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
    return DeviceList([device_from_row(r) for r in rows], total, page, per_page)


def device_in_scope(engine: sa.Engine, scope: Scope, device_id: str) -> Device | None:
    """The device, or None when there is none or it lies outside ``scope`` (the same
    answer, so a URL cannot tell whether another group's device exists)."""
    with engine.connect() as conn:
        row = conn.execute(
            _select()
            .join(groups, groups.c.id == devices.c.group_id)
            .where(devices.c.id == device_id, scope.device_filter())
        ).first()
    return device_from_row(row) if row else None


def _versions(conn: sa.Connection, scope: Scope) -> list[str]:
    return [
        str(v)
        for v in conn.execute(
            sa.select(devices.c.agent_version).where(scope.device_filter()).distinct()
        ).scalars()
    ]


@dataclass(frozen=True, slots=True)
class FilterChoices:
    groups: list[str]
    oses: list[str]
    versions: list[str]


def groups_in_scope(engine: sa.Engine, scope: Scope) -> list[str]:
    """Names of the groups ``scope`` may see (also those without devices yet)."""
    with engine.connect() as conn:
        return [
            str(n)
            for n in conn.execute(
                sa.select(groups.c.name)
                .where(scope.device_filter(groups.c.id))
                .order_by(groups.c.name)
            ).scalars()
        ]


def filter_choices(engine: sa.Engine, scope: Scope) -> FilterChoices:
    with engine.connect() as conn:
        oses = [
            str(v)
            for v in conn.execute(
                sa.select(devices.c.os)
                .where(scope.device_filter())
                .distinct()
                .order_by(devices.c.os)
            ).scalars()
        ]
        versions = sorted(_versions(conn, scope), key=version_key, reverse=True)
    return FilterChoices(groups_in_scope(engine, scope), oses, versions)


@dataclass(frozen=True, slots=True)
class FleetSummary:
    total: int
    online: int
    offline: int
    revoked: int
    new: int
    outdated: int
    # Agent versions below the minimum and how many (not revoked) devices run each.
    outdated_by_version: dict[str, int] = field(default_factory=dict)


def fleet_summary(
    engine: sa.Engine,
    scope: Scope,
    *,
    now: int,
    heartbeat_seconds: float,
    new_since_us: int,
    minimum_version: str,
) -> FleetSummary:
    """The dashboard's device counts within ``scope`` (one pass over the devices)."""

    def count_if(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                sa.func.count(),
                count_if(online_clause(now, heartbeat_seconds)),
                count_if(devices.c.revoked_us.is_not(None)),
                count_if(devices.c.enrolled_us >= new_since_us),
            ).where(scope.device_filter())
        ).one()
        per_version = conn.execute(
            sa.select(devices.c.agent_version, sa.func.count())
            .where(scope.device_filter(), devices.c.revoked_us.is_(None))
            .group_by(devices.c.agent_version)
        ).all()
    total, online, revoked, new = (int(v) for v in row)
    counts = {str(v): int(n) for v, n in per_version}
    outdated = {v: counts[v] for v in outdated_versions(counts, minimum_version)}
    return FleetSummary(
        total=total,
        online=online,
        offline=total - online - revoked,
        revoked=revoked,
        new=new,
        outdated=sum(outdated.values()),
        outdated_by_version=outdated,
    )


def latest_seen(engine: sa.Engine, scope: Scope, limit: int = 10) -> list[Device]:
    """The devices heard from most recently (index on last_seen_us)."""
    with engine.connect() as conn:
        rows = conn.execute(
            _select()
            .join(groups, groups.c.id == devices.c.group_id)
            .where(scope.device_filter(), devices.c.last_seen_us.is_not(None))
            .order_by(devices.c.last_seen_us.desc(), devices.c.id.desc())
            .limit(limit)
        ).all()
    return [device_from_row(r) for r in rows]


def revoked_devices(engine: sa.Engine, scope: Scope, limit: int = 100) -> list[Device]:
    """The most recently revoked devices in ``scope``."""
    with engine.connect() as conn:
        rows = conn.execute(
            _select()
            .join(groups, groups.c.id == devices.c.group_id)
            .where(scope.device_filter(), devices.c.revoked_us.is_not(None))
            .order_by(devices.c.revoked_us.desc(), devices.c.id)
            .limit(limit)
        ).all()
    return [device_from_row(r) for r in rows]


def events_per_hour(
    engine: sa.Engine, scope: Scope, *, until_us: int, hours: int = 24
) -> list[tuple[int, int]]:
    """Events per hour (by event time) of the devices in ``scope`` over the ``hours``
    before ``until_us``: (hour start, count), oldest first, empty hours included.

    Whole hours (``until_us`` on an hour): summed from the rollups. Otherwise, every
    group: one range count per hour on the (time_us) index — SQLite counts an
    index range an order of magnitude faster than it groups the same rows (a GROUP BY
    on a computed hour sorts every row in a temporary b-tree). A limited scope: the
    scope's devices, each read on the (device_id, time_us) index, then grouped.
    """
    start = until_us - hours * HOUR_US
    bounds = [(start + h * HOUR_US, start + (h + 1) * HOUR_US) for h in range(hours)]
    with engine.connect() as conn:
        if until_us % HOUR_US == 0:
            # Whole clock hours (the dashboard): the ingest-time rollups hold them.
            per_hour = conn.execute(
                sa.select(usage_hourly.c.hour_us, sa.func.sum(usage_hourly.c.count))
                .where(
                    usage_hourly.c.hour_us >= start,
                    usage_hourly.c.hour_us < until_us,
                    scope.device_filter(usage_hourly.c.group_id),
                )
                .group_by(usage_hourly.c.hour_us)
            ).all()
            summed = {int(h): int(n) for h, n in per_hour}
            return [(low, summed.get(low, 0)) for low, _ in bounds]
        if scope.all_groups:
            counts = conn.execute(
                sa.select(
                    *(
                        sa.select(sa.func.count())
                        .select_from(events)
                        .where(events.c.time_us >= low, events.c.time_us < high)
                        .scalar_subquery()
                        for low, high in bounds
                    )
                )
            ).one()
            return [(low, int(n)) for (low, _), n in zip(bounds, counts, strict=True)]
        bucket = ((events.c.time_us - start) // HOUR_US).label("bucket")
        rows = conn.execute(
            sa.select(bucket, sa.func.count())
            .select_from(
                devices.join(
                    events,
                    sa.and_(
                        events.c.device_id == devices.c.id,
                        events.c.time_us >= start,
                        events.c.time_us < until_us,
                    ),
                )
            )
            .where(scope.device_filter())
            .group_by(bucket)
        ).all()
    found = {int(b): int(n) for b, n in rows}
    return [(low, found.get(h, 0)) for h, (low, _) in enumerate(bounds)]
