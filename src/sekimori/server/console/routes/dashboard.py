"""Console: the dashboard — the fleet at a glance, within the user's device groups,
and the open alerts for those who handle them."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import sekimori
from sekimori.clock import now_us
from sekimori.server.console.i18n import gettext
from sekimori.server.console.permissions import allowed
from sekimori.server.console.routes.alerts import severity_label, status_label
from sekimori.server.console.routes.vulnerabilities import dashboard_card
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.alert_queries import SEVERITIES, latest_open_alerts, open_counts
from sekimori.server.store.device_queries import (
    HOUR_US,
    events_per_hour,
    fleet_summary,
    latest_seen,
)

__all__ = ["minimum_agent_version", "routes"]

NEW_DAYS = 7
LATEST_ALERTS = 5


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
    alerts: dict[str, Any] = {}
    if allowed(ctx.user.role, "alerts"):  # the card shows only to those who handle them
        alerts = {
            "alert_counts": open_counts(ctx.engine, ctx.scope),
            "latest_alerts": latest_open_alerts(ctx.engine, ctx.scope, limit=LATEST_ALERTS),
            "severities": SEVERITIES,
            "severity_label": severity_label,
            "status_label": status_label,
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
        **alerts,
        **dashboard_card(ctx),
    )


routes: list[BaseRoute] = [Route("/", dashboard, methods=["GET"])]
