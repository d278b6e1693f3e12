"""The logon hours report: first logon and last logoff per user and local day."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.store.event_search import EventCriteria
from sekimori.server.store.reports._common import (
    ROWS,
    _day_index,
    _kind,
)
from sekimori.server.store.schema import events
from sekimori.server.store.scope import Scope

__all__ = ["LogonDay", "logons_report"]

# -- logons ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogonDay:
    day: dt.date
    user: str
    first_logon_us: int | None
    last_logoff_us: int | None
    sessions: int
    devices: int


def logons_report(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str
) -> list[LogonDay]:
    """Per user and local day: the first logon, the last logoff, and the number of
    sessions begun (logons) and on how many PCs; newest day first."""
    day, days = _day_index(zoneinfo.ZoneInfo(timezone), criteria)
    day = day.label("day")
    # The sessions collector sets os_user to the session's user: reading only indexed
    # columns keeps this report on the (kind, time, os_user, device) index.
    user = sa.func.coalesce(events.c.os_user, "").label("user")
    is_logon = events.c.kind == "session.logon"
    is_logoff = events.c.kind == "session.logoff"
    # One pass over both kinds (two grouped queries cost twice the scan and sort).
    query = (
        sa.select(
            day,
            user,
            sa.func.min(sa.case((is_logon, events.c.time_us))).label("first"),
            sa.func.max(sa.case((is_logoff, events.c.time_us))).label("last"),
            sa.func.count(sa.case((is_logon, 1))).label("n"),
            sa.func.count(sa.distinct(sa.case((is_logon, events.c.device_id)))).label("devices"),
        )
        .where(*_kind(scope, criteria, "session.logon", "session.logoff"))
        .group_by(day, user)
        .order_by(day.desc(), user)
        .limit(ROWS)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        LogonDay(
            day=days[row.day],
            user=row.user,
            first_logon_us=row.first,
            last_logoff_us=row.last,
            sessions=int(row.n),
            devices=int(row.devices),
        )
        for row in rows
    ]
