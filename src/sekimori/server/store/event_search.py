"""The log search: events of every kind, filtered, newest first, within a user's scope.

Every query here is bounded: a time range (served by the ``time_us`` and
``(kind, time_us)`` indexes), a LIMIT on the page, a cap on the count (counting
every match over millions of rows would make the page as slow as the store is
big) and a cap on exports.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.store.schema import devices, events, groups
from sekimori.server.store.scope import Scope

__all__ = [
    "COUNT_CAP",
    "EventCriteria",
    "FoundEvent",
    "SearchPage",
    "event_conditions",
    "hostnames",
    "iter_events",
    "search_events",
]

COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class EventCriteria:
    """Which events: ``[since_us, until_us)``; ``device`` is an id or a hostname
    (any case); ``group`` a group name; ``user`` the exact OS user; ``kinds`` empty
    for all; ``text`` a case-insensitive "contains" on the searchable subject (URL
    and title, window title, path, command line)."""

    since_us: int
    until_us: int
    device: str = ""
    group: str = ""
    user: str = ""
    kinds: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True, slots=True)
class FoundEvent:
    device_id: str
    seq: int
    time_us: int
    kind: str
    os_user: str | None
    hostname: str
    payload: str
    tag: str | None
    subject: str | None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results; ``total`` counts matches up to ``COUNT_CAP`` and
    ``total_capped`` says there are more than that. ``total`` is None when the search
    has a text filter: counting a rare word would read every row in the period (the
    page itself stops at the first matches), so only ``has_more`` is known."""

    events: list[FoundEvent]
    total: int | None
    total_capped: bool
    has_more: bool


def event_conditions(scope: Scope, criteria: EventCriteria) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses on ``events`` for the criteria, the user's scope included."""
    where: list[sa.ColumnElement[bool]] = [
        events.c.time_us >= criteria.since_us,
        events.c.time_us < criteria.until_us,
    ]
    # An unrestricted user with no device or group filter needs no device list at all
    # (an IN over every device would only cost time).
    if not scope.all_groups or criteria.device or criteria.group:
        chosen = sa.select(devices.c.id).where(scope.device_filter())
        if criteria.device:
            chosen = chosen.where(
                sa.or_(
                    devices.c.id == criteria.device,
                    sa.func.lower(devices.c.hostname) == criteria.device.lower(),
                )
            )
        if criteria.group:
            chosen = chosen.where(
                devices.c.group_id.in_(
                    sa.select(groups.c.id).where(groups.c.name == criteria.group)
                )
            )
        where.append(events.c.device_id.in_(chosen))
    if len(criteria.kinds) == 1:
        where.append(events.c.kind == criteria.kinds[0])
    elif criteria.kinds:
        where.append(events.c.kind.in_(list(criteria.kinds)))
    if criteria.user:
        where.append(events.c.os_user == criteria.user)
    if criteria.text:
        # ILIKE on PostgreSQL, lower() LIKE lower() on SQLite; % and _ escaped.
        where.append(events.c.subject.icontains(criteria.text, autoescape=True))
    return where


_COLUMNS = (
    events.c.device_id,
    events.c.seq,
    events.c.time_us,
    events.c.kind,
    events.c.os_user,
    events.c.payload,
    events.c.tag,
    events.c.subject,
)


def hostnames(conn: sa.Connection, device_ids: Iterable[str]) -> dict[str, str]:
    """Hostnames of the given devices (a separate lookup keeps the event query on its
    time index rather than inviting a join plan)."""
    wanted = sorted(set(device_ids))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        rows = conn.execute(
            sa.select(devices.c.id, devices.c.hostname).where(
                devices.c.id.in_(wanted[start : start + 500])
            )
        ).all()
        found.update({row.id: row.hostname for row in rows})
    return found


def _found(rows: Iterable[sa.Row[tuple[object, ...]]], names: dict[str, str]) -> list[FoundEvent]:
    return [
        FoundEvent(
            device_id=row.device_id,
            seq=row.seq,
            time_us=row.time_us,
            kind=row.kind,
            os_user=row.os_user,
            hostname=names.get(row.device_id, row.device_id),
            payload=row.payload,
            tag=row.tag,
            subject=row.subject,
        )
        for row in rows
    ]


def _newest_first(scope: Scope, criteria: EventCriteria) -> sa.Select[tuple[object, ...]]:
    return (
        sa.select(*_COLUMNS)
        .where(*event_conditions(scope, criteria))
        .order_by(events.c.time_us.desc(), events.c.device_id.desc(), events.c.seq.desc())
    )


def search_events(
    engine: sa.Engine,
    scope: Scope,
    criteria: EventCriteria,
    *,
    offset: int = 0,
    limit: int = 50,
    count_cap: int = COUNT_CAP,
) -> SearchPage:
    """One page of matching events, newest first, with a bounded count (none for
    text searches, see SearchPage)."""
    where = event_conditions(scope, criteria)
    bounded = sa.select(sa.literal(1)).select_from(events).where(*where).limit(count_cap + 1)
    total: int | None = None
    with engine.connect() as conn:
        rows = conn.execute(_newest_first(scope, criteria).offset(offset).limit(limit + 1)).all()
        if not criteria.text:
            total = int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(bounded.subquery())
                ).scalar_one()
            )
        names = hostnames(conn, (row.device_id for row in rows[:limit]))
    return SearchPage(
        events=_found(rows[:limit], names),
        total=None if total is None else min(total, count_cap),
        total_capped=total is not None and total > count_cap,
        has_more=len(rows) > limit,
    )


def iter_events(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, *, limit: int, chunk: int = 1_000
) -> Iterator[FoundEvent]:
    """Matching events newest first, at most ``limit``, fetched in chunks (exports:
    memory stays flat however many rows go out)."""
    names: dict[str, str] = {}
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=chunk).execute(
            _newest_first(scope, criteria).limit(limit)
        )
        for part in result.partitions():
            missing = {row.device_id for row in part} - names.keys()
            if missing:
                names.update(hostnames(conn, missing))
            yield from _found(part, names)
