"""Console: alerts — the list (filtered, newest first, paged), one alert with its
matching events and history, and handling it: acknowledge, resolve, reopen, assign,
comment; several at once from the list.

Every lookup goes through the user's scope: an alert of a device in another group
answers 404, exactly like one that does not exist. Opening an alert shows what a
person did (its matching events), so the view is audited ("alert.view"); so is every
change, with its result.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.server.console.event_summary import kind_label, summarize
from sekimori.server.console.filters import FilterError, parse_activity_filter
from sekimori.server.console.i18n import N_, gettext
from sekimori.server.console.permissions import allowed
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.alert_queries import (
    ACTIONS,
    ALERTS_PER_PAGE,
    COMMENT_MAX,
    MAX_PAGE,
    SEVERITIES,
    STATUSES,
    Alert,
    AlertQuery,
    ChangeResult,
    Status,
    add_comment,
    alert_events_of,
    alert_history,
    assign_alert,
    assignable_users,
    get_alert,
    rule_choices,
    search_alerts,
    set_status,
)
from sekimori.server.store.users import ROLES

__all__ = ["SEVERITY_LABELS", "STATUS_LABELS", "routes", "severity_label", "status_label"]

# "severity|" is a context (as glib's Q_ macro has it): "Medium" alone is taken, for
# removable media (reports), and a severity is not a medium in Japanese. English
# shows the part after the bar.
SEVERITY_LABELS: Final[dict[str, str]] = {
    "critical": N_("severity|Critical"),
    "high": N_("severity|High"),
    "medium": N_("severity|Medium"),
    "low": N_("severity|Low"),
    "info": N_("severity|Info"),
}
STATUS_LABELS: Final[dict[str, str]] = {
    "open": N_("Open"),
    "acknowledged": N_("Acknowledged"),
    "resolved": N_("Resolved"),
}
# The list's status filter: "" is the default (not resolved), "all" is every status.
STATUS_FILTERS: Final[dict[str, tuple[Status, ...]]] = {
    "": ("open", "acknowledged"),
    "all": (),
    **{s: (s,) for s in STATUSES},
}
# Messages after a change (the ``done`` query parameter of the redirect).
DONE_MESSAGES: Final[dict[str, str]] = {
    "acknowledge": N_("The alert was acknowledged."),
    "resolve": N_("The alert was resolved."),
    "reopen": N_("The alert was reopened."),
    "assign": N_("The assignee was changed."),
    "comment": N_("The comment was added."),
    "unchanged": N_("Nothing changed: the alert was already so, or someone changed it first."),
}
_TEXT_MAX: Final = {"rule": 128, "device": 255, "assignee": 64, "q": 200}
# since/until without the other: the widest period the activity filter accepts.
_EARLIEST: Final = "2000-01-02"
_ANY_DAYS: Final = 100 * 366
_MAX_ID: Final = 2**31 - 1


def severity_label(severity: str) -> str:
    """A severity in the user's language ("medium" -> "Medium", "中")."""
    label = SEVERITY_LABELS.get(severity)
    return gettext(label).rpartition("|")[2] if label else severity


def status_label(status: str) -> str:
    label = STATUS_LABELS.get(status)
    return gettext(label) if label else status


def _alert_roles() -> list[str]:
    """The roles that may handle alerts (an assignee must have one)."""
    return [role for role in ROLES if allowed(role, "alerts")]


def _text(ctx: PageContext, name: str) -> str:
    value = ctx.query.get(name, "").strip()
    if len(value) > _TEXT_MAX[name]:
        raise FilterError(
            N_("%(field)s: at most %(limit)s characters."), field=name, limit=_TEXT_MAX[name]
        )
    if any(ord(ch) < 32 for ch in value):
        raise FilterError(N_("%(field)s: control characters are not allowed."), field=name)
    return value


def _period(ctx: PageContext, now: int) -> tuple[int | None, int | None]:
    since = ctx.query.get("since", "").strip()
    until = ctx.query.get("until", "").strip()
    if not since and not until:
        return None, None
    found = parse_activity_filter(
        {"since": since or _EARLIEST, "until": until},
        timezone=ctx.console.settings.server.console_timezone,
        now_us=now,
        default_since=_EARLIEST,
        max_days=_ANY_DAYS,
        paged=False,
        kinds=False,
    )
    return (found.since_us if since else None, found.until_us if until else None)


def _query(ctx: PageContext) -> AlertQuery:
    """The list's filters from the URL. Raises FilterError on a value it cannot use."""
    status = ctx.query.get("status", "")
    if status not in STATUS_FILTERS:
        raise FilterError(N_("status: %(value)s is not a status."), value=status[:32])
    severity = ctx.query.get("severity", "")
    if severity and severity not in SEVERITIES:
        raise FilterError(N_("severity: %(value)s is not a severity."), value=severity[:32])
    raw_page = ctx.query.get("page", "").strip() or "1"
    if not raw_page.isdigit() or len(raw_page) > 6 or not 1 <= int(raw_page) <= MAX_PAGE:
        raise FilterError(N_("page: %(value)s is not a page number."), value=raw_page[:20])
    since_us, until_us = _period(ctx, now_us())
    return AlertQuery(
        statuses=STATUS_FILTERS[status],
        severity=severity,
        rule=_text(ctx, "rule"),
        device=_text(ctx, "device"),
        assignee=_text(ctx, "assignee"),
        q=_text(ctx, "q"),
        since_us=since_us,
        until_us=until_us,
        page=int(raw_page),
    )


_LIST_PARAMS: Final = ("status", "severity", "rule", "device", "assignee", "q", "since", "until")


def _params(ctx: PageContext) -> dict[str, str]:
    return {k: ctx.query.get(k, "")[:255] for k in _LIST_PARAMS}


def _labels() -> dict[str, Any]:
    return {
        "severity_label": severity_label,
        "status_label": status_label,
        "severities": SEVERITIES,
        "statuses": STATUSES,
    }


def _page_number(ctx: PageContext) -> int:
    raw = ctx.query.get("page", "")
    return int(raw) if raw.isdigit() and 1 <= len(raw) <= 6 else 1


@page("alerts")
def alert_list(ctx: PageContext) -> Response:
    params = _params(ctx)

    def link(page_number: int) -> str:
        kept = {k: v for k, v in params.items() if v}
        return "/alerts?" + urlencode({**kept, "page": page_number})

    common: dict[str, Any] = {
        "params": params,
        "rules": rule_choices(ctx.engine, ctx.scope),
        "link": link,
        "back": link(_page_number(ctx)),
        "per_page": ALERTS_PER_PAGE,
        "done": DONE_MESSAGES.get(ctx.query.get("done", "")),
        **_labels(),
    }
    try:
        query = _query(ctx)
    except FilterError as exc:
        return ctx.render("alerts.html", status=400, error=exc.text(), result=None, **common)
    result = search_alerts(ctx.engine, ctx.scope, query)
    return ctx.render("alerts.html", error=None, result=result, **common)


def _alert(ctx: PageContext) -> Alert | None:
    alert_id = int(ctx.request.path_params["alert_id"])
    if alert_id > _MAX_ID:  # would overflow the column: no such alert
        return None
    return get_alert(ctx.engine, ctx.scope, alert_id)


def _not_found(ctx: PageContext) -> Response:
    return ctx.render("not_found.html", status=404)


def _detail(ctx: PageContext, alert: Alert, *, status: int = 200, **context: Any) -> Response:
    found = alert_events_of(alert, ctx.engine)
    ctx.audit(
        "alert.view",
        f"alert:{alert.id}",
        device_id=alert.device_id,
        hostname=alert.hostname,
        rule_id=alert.rule_id,
        events_shown=len(found),
    )
    return ctx.render(
        "alerts_detail.html",
        status=status,
        alert=alert,
        lines=[(e, summarize(e.kind, e.payload) or e.subject or e.tag or "") for e in found],
        history=alert_history(ctx.engine, alert),
        assignees=assignable_users(ctx.engine, alert.device_id, _alert_roles()),
        kind_label=kind_label,
        comment_max=COMMENT_MAX,
        done=DONE_MESSAGES.get(ctx.query.get("done", "")),
        **_labels(),
        **context,
    )


@page("alerts")
def alert_page(ctx: PageContext) -> Response:
    alert = _alert(ctx)
    return _not_found(ctx) if alert is None else _detail(ctx, alert)


def _back_to(alert: Alert, done: str) -> Response:
    return RedirectResponse(f"/alerts/{alert.id}?done={done}", status_code=303)


_ERRORS: Final[dict[ChangeResult, tuple[int, str]]] = {
    "not_allowed": (400, N_("That cannot be done to an alert in this state.")),
    "conflict": (
        409,
        N_(
            "This alert cannot be reopened: a newer alert of the same rule and device is "
            "open. Handle that one instead."
        ),
    ),
    "not_eligible": (
        400,
        N_("That user may not handle alerts of this device (role or device groups)."),
    ),
    "too_long": (400, N_("A comment is at most %(limit)s characters.")),
}


def _error(ctx: PageContext, alert: Alert, result: ChangeResult, **context: Any) -> Response:
    status, message = _ERRORS[result]
    return _detail(
        ctx, alert, status=status, error=gettext(message) % {"limit": COMMENT_MAX}, **context
    )


_STATUS_AFTER: Final = {"acknowledge": "acknowledged", "resolve": "resolved", "reopen": "open"}


def _change_status(ctx: PageContext, alert: Alert, action: str) -> ChangeResult:
    result = set_status(ctx.engine, alert, action, author=ctx.user.username, now_us=now_us())
    new = _STATUS_AFTER[action] if result == "ok" else alert.status
    ctx.audit(
        f"alert.{action}",
        f"alert:{alert.id}",
        device_id=alert.device_id,
        rule_id=alert.rule_id,
        status={"old": alert.status, "new": new},
        result=result,
    )
    return result


@page("alerts")
def alert_status(ctx: PageContext) -> Response:
    alert = _alert(ctx)
    if alert is None:
        return _not_found(ctx)
    action = ctx.field("action")
    if action not in ACTIONS:
        return _error(ctx, alert, "not_allowed")
    result = _change_status(ctx, alert, action)
    if result in _ERRORS:
        return _error(ctx, get_alert(ctx.engine, ctx.scope, alert.id) or alert, result)
    return _back_to(alert, action if result == "ok" else "unchanged")


@page("alerts")
def alert_assign(ctx: PageContext) -> Response:
    alert = _alert(ctx)
    if alert is None:
        return _not_found(ctx)
    assignee = ctx.field("assignee").strip()[:128] or None
    result = assign_alert(
        ctx.engine,
        alert,
        assignee,
        author=ctx.user.username,
        roles=_alert_roles(),
        now_us=now_us(),
    )
    ctx.audit(
        "alert.assign",
        f"alert:{alert.id}",
        device_id=alert.device_id,
        rule_id=alert.rule_id,
        assignee={"old": alert.assignee, "new": assignee if result == "ok" else alert.assignee},
        result=result,
    )
    if result in _ERRORS:
        return _error(ctx, alert, result)
    return _back_to(alert, "assign" if result == "ok" else "unchanged")


@page("alerts")
def alert_comment(ctx: PageContext) -> Response:
    alert = _alert(ctx)
    if alert is None:
        return _not_found(ctx)
    body = ctx.field("body")
    result = add_comment(ctx.engine, alert, body, author=ctx.user.username, now_us=now_us())
    if result == "ok":
        ctx.audit(
            "alert.comment",
            f"alert:{alert.id}",
            device_id=alert.device_id,
            rule_id=alert.rule_id,
            length=len(body.strip()),
        )
    if result in _ERRORS:
        return _error(ctx, alert, result, comment=body[: COMMENT_MAX * 2])
    return _back_to(alert, "comment" if result == "ok" else "unchanged")


def _bulk_ids(raw: list[str]) -> list[int]:
    """Alert ids from the list's checkboxes (non-numbers dropped, one page at most)."""
    return sorted({int(v) for v in raw[:ALERTS_PER_PAGE] if v.isdigit() and len(v) <= 12})


def _safe_back(target: str) -> str:
    # Only back to the alert list: the field comes from a form, never an open redirect.
    if target == "/alerts" or (target.startswith("/alerts?") and "\\" not in target):
        return target[:2000]
    return "/alerts"


@page("alerts")
def alert_bulk(ctx: PageContext) -> Response:
    action = ctx.field("action")
    raw = [v for v in (ctx.form.getlist("ids") if ctx.form else []) if isinstance(v, str)]
    back = _safe_back(ctx.field("back"))
    if action not in ("acknowledge", "resolve"):
        return RedirectResponse(back, status_code=303)
    results: dict[str, int] = {}
    for alert_id in _bulk_ids(raw):
        alert = get_alert(ctx.engine, ctx.scope, alert_id)
        if alert is None:  # gone, or another group's: skipped like a wrong id
            continue
        result = _change_status(ctx, alert, action)
        results[result] = results.get(result, 0) + 1
    done = action if results.get("ok") else "unchanged"
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}done={done}", status_code=303)


routes: list[BaseRoute] = [
    Route("/alerts", alert_list, methods=["GET"]),
    Route("/alerts/bulk", alert_bulk, methods=["POST"]),
    Route("/alerts/{alert_id:int}", alert_page, methods=["GET"]),
    Route("/alerts/{alert_id:int}/status", alert_status, methods=["POST"]),
    Route("/alerts/{alert_id:int}/assign", alert_assign, methods=["POST"]),
    Route("/alerts/{alert_id:int}/comment", alert_comment, methods=["POST"]),
]
