"""Shared pieces of the reports: payload fields per dialect, local days and hours,
the rollup reader and the report constants."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sekimori.server.store.event_search import EventCriteria, event_conditions
from sekimori.server.store.rollups import HOUR_US, hour_floor, rollup_columns
from sekimori.server.store.schema import devices, events, groups, usage_hourly
from sekimori.server.store.scope import Scope

__all__ = ["ROWS", "TOP", "day_starts", "json_int", "json_text", "rolls_up"]

TOP = 20
ROWS = 200
_QUARTER_US = 900_000_000


# -- dialect helpers -------------------------------------------------------------


def json_text(dialect: str, column: sa.ColumnElement[Any], *path: str) -> sa.ColumnElement[str]:
    """The payload field at ``path`` as text (NULL when absent or null)."""
    if dialect == "postgresql":
        doc: sa.ColumnElement[Any] = sa.cast(column, postgresql.JSONB)
        for key in path[:-1]:
            doc = doc.op("->")(key)
        return doc.op("->>", return_type=sa.Text)(path[-1])
    return sa.func.json_extract(column, "$." + ".".join(path), type_=sa.Text)


def json_int(dialect: str, column: sa.ColumnElement[Any], *path: str) -> sa.ColumnElement[int]:
    """The payload field at ``path`` as an integer (NULL when absent or null)."""
    if dialect == "postgresql":
        return sa.cast(json_text(dialect, column, *path), sa.BigInteger)
    return sa.func.json_extract(column, "$." + ".".join(path), type_=sa.BigInteger)


def _first_word(dialect: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """The text up to the first space (a web visit's subject is "URL title")."""
    if dialect == "postgresql":
        return sa.func.split_part(column, " ", 1, type_=sa.Text)
    return sa.func.substr(column, 1, sa.func.instr(column + " ", " ") - 1, type_=sa.Text)


def day_starts(zone: zoneinfo.ZoneInfo, since_us: int, until_us: int) -> list[dt.date]:
    """The local dates the range touches, first to last."""
    first = dt.datetime.fromtimestamp(since_us / 1e6, tz=zone).date()
    last = dt.datetime.fromtimestamp((until_us - 1) / 1e6, tz=zone).date()
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _midnight_us(zone: zoneinfo.ZoneInfo, day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp() * 1_000_000)


def _day_index(
    zone: zoneinfo.ZoneInfo, criteria: EventCriteria
) -> tuple[sa.ColumnElement[int], list[dt.date]]:
    """A SQL expression giving each event's local day as an index into the list."""
    days = day_starts(zone, criteria.since_us, criteria.until_us)
    whens = [
        (events.c.time_us < _midnight_us(zone, day + dt.timedelta(days=1)), index)
        for index, day in enumerate(days[:-1])
    ]
    if not whens:
        return sa.literal(0, sa.Integer), days
    return sa.case(*whens, else_=len(days) - 1), days


def _kind(scope: Scope, criteria: EventCriteria, *kinds: str) -> list[sa.ColumnElement[bool]]:
    return event_conditions(scope, EventCriteria(**{**_as_dict(criteria), "kinds": kinds}))


def _as_dict(criteria: EventCriteria) -> dict[str, Any]:
    return {name: getattr(criteria, name) for name in EventCriteria.__slots__}


def _dialect(engine: sa.Engine) -> str:
    return engine.dialect.name


# -- rollups -----------------------------------------------------------------------


def rolls_up(criteria: EventCriteria, timezone: str) -> bool:
    """Whether the report can read the rollups: no device, user or text filter, and
    a zone whose offset is whole hours over the range (a UTC hour is one local hour;
    Asia/Kolkata's is not: such zones read the events)."""
    if criteria.device or criteria.user or criteria.text:
        return False
    zone = zoneinfo.ZoneInfo(timezone)
    return all(
        (offset := dt.datetime.fromtimestamp(t / 1e6, tz=zone).utcoffset()) is not None
        and offset.total_seconds() % 3600 == 0
        for t in (criteria.since_us, criteria.until_us)
    )


_Sums = dict[tuple[Any, ...], list[int]]


def _rollup_sums(
    conn: sa.Connection, scope: Scope, criteria: EventCriteria, kinds: tuple[str, ...], by: str
) -> _Sums:
    """(count, amount) of the events of ``kinds`` per ``by``: "key", "hour" or
    "group_key". Whole hours come from ``usage_hourly``, the partial hours at the
    ends of the range from the events (at most two hours of one kind)."""
    first = -(-criteria.since_us // HOUR_US) * HOUR_US
    last = hour_floor(criteria.until_us)
    sums: _Sums = {}

    def add(rows: Sequence[Any]) -> None:
        for row in rows:
            cell = sums.setdefault(tuple(row)[:-2], [0, 0])
            cell[0] += int(row[-2])
            cell[1] += int(row[-1] or 0)

    edges = [(criteria.since_us, criteria.until_us)]
    if first < last:
        edges = [(criteria.since_us, first), (last, criteria.until_us)]
        u = usage_hourly.c
        columns = {
            "key": [u.key],
            "hour": [u.hour_us],
            "group_key": [u.group_id, u.key],
            "hour_key": [u.hour_us, u.key],
        }[by]
        where = [
            u.kind.in_(kinds),
            u.hour_us >= first,
            u.hour_us < last,
            scope.device_filter(u.group_id),
        ]
        if criteria.group:
            where.append(
                u.group_id.in_(sa.select(groups.c.id).where(groups.c.name == criteria.group))
            )
        add(
            conn.execute(
                sa.select(*columns, sa.func.sum(u.count), sa.func.sum(u.amount))
                .where(*where)
                .group_by(*columns)
            ).all()
        )
    key, amount = rollup_columns(conn.dialect.name)
    hour = events.c.time_us - events.c.time_us % HOUR_US
    raw = {
        "key": [key],
        "hour": [hour],
        "group_key": [devices.c.group_id, key],
        "hour_key": [hour, key],
    }[by]
    for since, until in edges:
        if since >= until:
            continue
        part = EventCriteria(**{**_as_dict(criteria), "since_us": since, "until_us": until})
        add(
            conn.execute(
                sa.select(*raw, sa.func.count(), sa.func.sum(amount))
                .select_from(events.join(devices, devices.c.id == events.c.device_id))
                .where(*_kind(scope, part, *kinds))
                .group_by(*raw)
            ).all()
        )
    return sums


def _top(sums: _Sums, *, index: int, limit: int) -> list[tuple[tuple[Any, ...], list[int]]]:
    return sorted(sums.items(), key=lambda kv: (-kv[1][index], kv[0]))[:limit]


def _local_hours(sums: _Sums, zone: zoneinfo.ZoneInfo) -> list[int]:
    hours = [0] * 24
    for (hour_us,), (count, _) in sums.items():
        hours[dt.datetime.fromtimestamp(hour_us / 1e6, tz=zone).hour] += count
    return hours
