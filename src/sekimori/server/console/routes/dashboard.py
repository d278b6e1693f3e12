"""Console: the dashboard — the fleet at a glance, within the user's device groups."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import sekimori
from sekimori.clock import now_us
from sekimori.server.console.i18n import gettext
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.device_queries import (
    HOUR_US,
    events_per_hour,
    fleet_summary,
    latest_seen,
)

__all__ = ["minimum_agent_version", "routes"]

NEW_DAYS = 7


def minimum_agent_version(ctx: PageContext) -> str:
    """Agents below this are outdated: the setting, else this server's own version."""
    return ctx.console.settings.server.minimum_agent_version or sekimori.__version__


def _hour_label(start_us: int, timezone: str) -> str:
    zone = zoneinfo.ZoneInfo(timezone)
    return dt.datetime.fromtimestamp(start_us / 1_000_000, tz=zone).strftime("%H:00")


@page("dashboard")
def dashboard(ctx: PageContext) -> Response:
    now = now_us()
    heartbeat = ctx.console.settings.server.heartbeat_seconds
    minimum = minimum_agent_version(ctx)
    summary = fleet_summary(
        ctx.engine,
        ctx.scope,
        now=now,
        heartbeat_seconds=heartbeat,
        new_since_us=now - NEW_DAYS * 24 * HOUR_US,
        minimum_version=minimum,
    )
    # Whole hours, so each bar is one clock hour (the last one still filling).
    until = (now // HOUR_US + 1) * HOUR_US
    hours = events_per_hour(ctx.engine, ctx.scope, until_us=until)
    chart = {
        "type": "bar",
        "labels": [
            _hour_label(start, ctx.console.settings.server.console_timezone) for start, _ in hours
        ],
        "datasets": [{"label": gettext("Events"), "data": [n for _, n in hours]}],
    }
    return ctx.render(
        "dashboard.html",
        summary=summary,
        minimum_version=minimum,
        new_days=NEW_DAYS,
        activity_total=sum(n for _, n in hours),
        chart=chart,
        latest=latest_seen(ctx.engine, ctx.scope, limit=10),
        now=now,
        heartbeat=heartbeat,
    )


routes: list[BaseRoute] = [Route("/", dashboard, methods=["GET"])]
