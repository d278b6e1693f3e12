"""The web access report: domains, sites, visitors, hours of the day."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sekimori.server.store.event_search import EventCriteria, hostnames
from sekimori.server.store.reports._common import (
    _QUARTER_US,
    ROWS,
    TOP,
    _dialect,
    _first_word,
    _kind,
    _local_hours,
    _rollup_sums,
    _top,
    rolls_up,
)
from sekimori.server.store.schema import devices, events, groups
from sekimori.server.store.scope import Scope

__all__ = ["Count", "WebReport", "web_report"]

# -- web -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Count:
    key: str
    count: int
    users: int = 0
    devices: int = 0
    who: str = ""


@dataclass(frozen=True, slots=True)
class WebReport:
    domains: list[Count]
    sites: list[Count]
    by_who: list[Count]
    hours: list[int]  # 24 visit counts, local hour of day 0..23
    total: int
    # From the rollups: no sites, no users/devices per domain, no per-user or
    # per-device rows (they need a device or user filter).
    rolled_up: bool = False


def web_report(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str, *, by: str = "user"
) -> WebReport:
    """Top domains and sites, top domains per ``by`` (user, device or group), and
    visits per local hour of the day."""
    if rolls_up(criteria, timezone):
        return _web_rolled_up(engine, scope, criteria, timezone, by)
    dialect = _dialect(engine)
    where = _kind(scope, criteria, "web.visit")
    count = sa.func.count().label("n")
    users = sa.func.count(sa.distinct(events.c.os_user)).label("users")
    devs = sa.func.count(sa.distinct(events.c.device_id)).label("devices")
    url = _first_word(dialect, events.c.subject).label("url")
    quarter = (events.c.time_us // _QUARTER_US).label("quarter")
    with engine.connect() as conn:
        domains = conn.execute(
            sa.select(events.c.tag, count, users, devs)
            .where(*where)
            .group_by(events.c.tag)
            .order_by(count.desc(), events.c.tag)
            .limit(TOP)
        ).all()
        sites = conn.execute(
            sa.select(url, count, users, devs)
            .where(*where)
            .group_by(url)
            .order_by(count.desc(), url)
            .limit(TOP)
        ).all()
        by_who = _web_by_who(conn, where, by)
        quarters = conn.execute(
            sa.select(quarter, count).where(*where).group_by(quarter).order_by(quarter)
        ).all()
    zone = zoneinfo.ZoneInfo(timezone)
    hours = [0] * 24
    for row in quarters:
        local = dt.datetime.fromtimestamp(row.quarter * (_QUARTER_US // 1_000_000), tz=zone)
        hours[local.hour] += int(row.n)
    return WebReport(
        domains=[Count(r.tag or "", r.n, r.users, r.devices) for r in domains],
        sites=[Count(r.url or "", r.n, r.users, r.devices) for r in sites],
        by_who=by_who,
        hours=hours,
        total=sum(hours),
    )


def _web_rolled_up(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str, by: str
) -> WebReport:
    kinds = ("web.visit",)
    with engine.connect() as conn:
        per_domain = _rollup_sums(conn, scope, criteria, kinds, "key")
        hours = _local_hours(
            _rollup_sums(conn, scope, criteria, kinds, "hour"), zoneinfo.ZoneInfo(timezone)
        )
        by_who: list[Count] = []
        if by == "group":
            per_group = _rollup_sums(conn, scope, criteria, kinds, "group_key")
            names = {r.id: r.name for r in conn.execute(sa.select(groups.c.id, groups.c.name))}
            by_who = [
                Count(key, count, who=names.get(group_id, str(group_id)))
                for (group_id, key), (count, _) in _top(per_group, index=0, limit=ROWS)
            ]
    return WebReport(
        domains=[Count(key, count) for (key,), (count, _) in _top(per_domain, index=0, limit=TOP)],
        sites=[],
        by_who=by_who,
        hours=hours,
        total=sum(hours),
        rolled_up=True,
    )


def _web_by_who(
    conn: sa.Connection, where: Sequence[sa.ColumnElement[bool]], by: str
) -> list[Count]:
    count = sa.func.count().label("n")
    if by == "group":
        who: sa.ColumnElement[Any] = groups.c.name
        source: sa.FromClause = events.join(devices, devices.c.id == events.c.device_id).join(
            groups, groups.c.id == devices.c.group_id
        )
    elif by == "device":
        who = events.c.device_id
        source = events
    else:
        who = events.c.os_user
        source = events
    rows = conn.execute(
        sa.select(who.label("who"), events.c.tag, count)
        .select_from(source)
        .where(*where)
        .group_by(who, events.c.tag)
        .order_by(count.desc(), who, events.c.tag)
        .limit(ROWS)
    ).all()
    names = hostnames(conn, (r.who for r in rows)) if by == "device" else {}
    return [Count(r.tag or "", r.n, who=names.get(r.who, r.who or "")) for r in rows]
