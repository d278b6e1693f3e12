"""The application time report: time per application and window title per day."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.store.event_search import EventCriteria
from sekimori.server.store.reports._common import (
    ROWS,
    TOP,
    _day_index,
    _dialect,
    _kind,
    _rollup_sums,
    _top,
    json_int,
    json_text,
    rolls_up,
)
from sekimori.server.store.schema import events
from sekimori.server.store.scope import Scope

__all__ = ["AppReport", "AppTime", "apps_report"]

# -- applications ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppTime:
    day: dt.date | None
    user: str
    application: str
    title: str
    duration_us: int


@dataclass(frozen=True, slots=True)
class AppReport:
    per_day: list[AppTime]  # per day, user and application
    titles: list[AppTime]  # per day, user, application and window title
    totals: list[AppTime]  # per application over the range (the chart)
    # From the rollups: per_day is per day and application (user ""), no titles.
    rolled_up: bool = False


def apps_report(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str
) -> AppReport:
    """Focused time per application and window title, per user per local day: the
    sum of the focus spans that ``window.focus`` and ``window.idle`` events end (a
    span counts on the day it ended)."""
    if rolls_up(criteria, timezone):
        return _apps_rolled_up(engine, scope, criteria, timezone)
    dialect = _dialect(engine)
    where = [
        *_kind(scope, criteria, "window.focus", "window.idle"),
        json_int(dialect, events.c.payload, "previous", "duration_us").is_not(None),
    ]
    app = sa.func.coalesce(
        json_text(dialect, events.c.payload, "previous", "window", "application"), ""
    ).label("app")
    title = sa.func.coalesce(
        json_text(dialect, events.c.payload, "previous", "window", "title"), ""
    ).label("title")
    spent = sa.func.sum(json_int(dialect, events.c.payload, "previous", "duration_us")).label(
        "spent"
    )
    user = sa.func.coalesce(events.c.os_user, "").label("user")
    day, days = _day_index(zoneinfo.ZoneInfo(timezone), criteria)
    day = day.label("day")
    with engine.connect() as conn:
        per_day = conn.execute(
            sa.select(day, user, app, spent)
            .where(*where)
            .group_by(day, user, app)
            .order_by(day.desc(), spent.desc(), user, app)
            .limit(ROWS)
        ).all()
        titles = conn.execute(
            sa.select(day, user, app, title, spent)
            .where(*where)
            .group_by(day, user, app, title)
            .order_by(spent.desc(), day.desc(), user, app, title)
            .limit(ROWS)
        ).all()
        totals = conn.execute(
            sa.select(app, spent).where(*where).group_by(app).order_by(spent.desc(), app).limit(TOP)
        ).all()
    return AppReport(
        per_day=[AppTime(days[r.day], r.user, r.app, "", int(r.spent)) for r in per_day],
        titles=[AppTime(days[r.day], r.user, r.app, r.title, int(r.spent)) for r in titles],
        totals=[AppTime(None, "", r.app, "", int(r.spent)) for r in totals],
    )


def _apps_rolled_up(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str
) -> AppReport:
    kinds = ("window.focus", "window.idle")
    zone = zoneinfo.ZoneInfo(timezone)
    with engine.connect() as conn:
        per_app = _rollup_sums(conn, scope, criteria, kinds, "key")
        per_hour = _rollup_sums(conn, scope, criteria, kinds, "hour_key")
    per_day: dict[tuple[dt.date, str], int] = {}
    for (hour_us, app), (_, spent) in per_hour.items():
        day = dt.datetime.fromtimestamp(hour_us / 1e6, tz=zone).date()
        per_day[(day, app)] = per_day.get((day, app), 0) + spent
    days = sorted(
        ((day, app, spent) for (day, app), spent in per_day.items() if spent > 0),
        key=lambda r: (-r[0].toordinal(), -r[2], r[1]),
    )[:ROWS]
    return AppReport(
        per_day=[AppTime(day, "", app, "", spent) for day, app, spent in days],
        titles=[],
        totals=[
            AppTime(None, "", key, "", spent)
            for (key,), (_, spent) in _top(per_app, index=1, limit=TOP)
            if spent > 0
        ],
        rolled_up=True,
    )
