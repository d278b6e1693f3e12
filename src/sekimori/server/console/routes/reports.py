"""Console: activity reports — web access, application use, logon hours, copies to
removable media, USB devices. A table and a chart each, over a time range (default
the last 7 days) within the user's scope; every view is audited with its filters."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.server.console.activity import criteria
from sekimori.server.console.filters import (
    REPORTS_DEFAULT_SINCE,
    REPORTS_MAX_DAYS,
    ActivityFilter,
    FilterError,
    parse_activity_filter,
)
from sekimori.server.console.i18n import N_, gettext
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.device_queries import groups_in_scope
from sekimori.server.store.reports import (
    apps_report,
    logons_report,
    removable_report,
    usb_report,
    web_report,
)

__all__ = ["REPORTS", "routes"]

# name -> (title, description), in menu order.
REPORTS: Final[dict[str, tuple[str, str]]] = {
    "web": (N_("Web access"), N_("Top domains and sites per user, device or group, by hour.")),
    "apps": (N_("Application use"), N_("Time per application and window title, per day.")),
    "logons": (N_("Logon hours"), N_("First logon and last logoff per user and day.")),
    "removable": (
        N_("Copies to removable media"),
        N_("Files written to USB sticks and other removable media."),
    ),
    "usb": (N_("USB devices"), N_("USB devices connected to each PC; mass storage first.")),
}
WEB_BY: Final[dict[str, str]] = {
    "user": N_("OS user"),
    "device": N_("Device"),
    "group": N_("Group"),
}


def _timezone(ctx: PageContext) -> str:
    return ctx.console.settings.server.console_timezone


def _parse(ctx: PageContext, name: str) -> ActivityFilter:
    activity = parse_activity_filter(
        dict(ctx.query.items()),
        timezone=_timezone(ctx),
        now_us=now_us(),
        default_since=REPORTS_DEFAULT_SINCE,
        max_days=REPORTS_MAX_DAYS,
        paged=False,
        kinds=False,
    )
    if name == "web":
        by = ctx.query.get("by", "") or "user"
        if by not in WEB_BY:
            raise FilterError(N_("by: %(value)s is not user, device or group."), value=by[:20])
        activity = dataclasses.replace(activity, extra={"by": by})
    return activity


def _chart(labels: list[str], label: str, data: list[float], **options: Any) -> dict[str, Any]:
    return {
        "type": "bar",
        "labels": labels,
        "datasets": [{"label": label, "data": data}],
        **options,
    }


def _minutes(us: int) -> float:
    return round(us / 60_000_000, 1)


def _web(ctx: PageContext, activity: ActivityFilter) -> dict[str, Any]:
    by = activity.extra.get("by", "user")
    report = web_report(ctx.engine, ctx.scope, criteria(activity), _timezone(ctx), by=by)
    return {
        "report": report,
        "by": by,
        "by_choices": [(key, gettext(label)) for key, label in WEB_BY.items()],
        "chart": _chart([f"{h}" for h in range(24)], gettext("Visits"), list(report.hours)),
        "domains_chart": _chart(
            [d.key for d in report.domains[:10]],
            gettext("Visits"),
            [d.count for d in report.domains[:10]],
            horizontal=True,
        ),
    }


def _apps(ctx: PageContext, activity: ActivityFilter) -> dict[str, Any]:
    report = apps_report(ctx.engine, ctx.scope, criteria(activity), _timezone(ctx))
    return {
        "report": report,
        "chart": _chart(
            [t.application or "—" for t in report.totals[:10]],
            gettext("Minutes"),
            [_minutes(t.duration_us) for t in report.totals[:10]],
            horizontal=True,
        ),
    }


def _logons(ctx: PageContext, activity: ActivityFilter) -> dict[str, Any]:
    rows = logons_report(ctx.engine, ctx.scope, criteria(activity), _timezone(ctx))
    per_day: dict[str, int] = {}
    for row in rows:
        key = row.day.isoformat()
        per_day[key] = per_day.get(key, 0) + row.sessions
    days = sorted(per_day)
    return {
        "rows": rows,
        "chart": _chart(days, gettext("Sessions"), [per_day[d] for d in days]),
    }


def _removable(ctx: PageContext, activity: ActivityFilter) -> dict[str, Any]:
    report = removable_report(ctx.engine, ctx.scope, criteria(activity))
    top = report.totals[:10]
    return {
        "report": report,
        "chart": _chart(
            [f"{t.user or '—'} @ {t.hostname}" for t in top],
            gettext("MiB"),
            [round(t.bytes / (1 << 20), 2) for t in top],
            horizontal=True,
        ),
    }


def _usb(ctx: PageContext, activity: ActivityFilter) -> dict[str, Any]:
    report = usb_report(ctx.engine, ctx.scope, criteria(activity))
    top = report.devices[:10]
    return {
        "report": report,
        "chart": _chart(
            [f"{d.name or d.ids} {d.serial}".strip() for d in top],
            gettext("Connections"),
            [d.attachments for d in top],
            horizontal=True,
        ),
    }


_BUILDERS: Final[dict[str, Callable[[PageContext, ActivityFilter], dict[str, Any]]]] = {
    "web": _web,
    "apps": _apps,
    "logons": _logons,
    "removable": _removable,
    "usb": _usb,
}


def _values(ctx: PageContext) -> dict[str, str]:
    return {name: ctx.query.get(name, "") for name in ("since", "until", "device", "group", "user")}


def _reports_menu() -> list[tuple[str, str, str]]:
    return [(name, gettext(title), gettext(text)) for name, (title, text) in REPORTS.items()]


@page("activity")
def index(ctx: PageContext) -> Response:
    return ctx.render("reports.html", reports=_reports_menu())


def _report_page(name: str) -> Callable[[Request], Awaitable[Response]]:
    def show(ctx: PageContext) -> Response:
        common: dict[str, Any] = {
            "report_name": name,
            "title": gettext(REPORTS[name][0]),
            "reports": _reports_menu(),
            "groups": groups_in_scope(ctx.engine, ctx.scope),
            "values": _values(ctx),
        }
        try:
            activity = _parse(ctx, name)
        except FilterError as error:
            return ctx.render(f"reports_{name}.html", status=400, error=error.text(), **common)
        data = _BUILDERS[name](ctx, activity)
        ctx.audit("activity.report", name, filters=activity.audit_detail())
        return ctx.render(f"reports_{name}.html", error=None, activity=activity, **common, **data)

    show.__name__ = f"report_{name}"
    show.__doc__ = f"The {name} report."
    return page("activity")(show)


routes: list[BaseRoute] = [
    Route("/reports", index, methods=["GET"]),
    *(Route(f"/reports/{name}", _report_page(name), methods=["GET"]) for name in REPORTS),
]
