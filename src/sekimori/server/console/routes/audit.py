"""Console: the audit trail (administrators and auditors).

Looking at the trail is itself recorded ("audit.view", with the filters), and so is
checking its hash chain ("audit.verify", with the result): who watched the watchers
is part of the record.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from typing import Any, Final
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.server.console.i18n import N_, gettext
from sekimori.server.console.web import PageContext, client_ip, page
from sekimori.server.store.audit import (
    AuditEntry,
    ChainReport,
    append_audit,
    search_audit,
    verify_chain,
)

__all__ = ["ACTION_LABELS", "action_label", "routes"]

PAGE_SIZE: Final = 50
MAX_PAGE: Final = 2_000

# The actions the console and the CLI write, with their labels. An action missing
# here is still shown and searchable, by its name.
ACTION_LABELS: Final[dict[str, str]] = {
    "login": N_("Logged in"),
    "login.failed": N_("Login failed"),
    "login.throttled": N_("Login refused (too many attempts)"),
    "login.totp_failed": N_("Two-factor code refused"),
    "logout": N_("Logged out"),
    "account.locale": N_("Changed own language"),
    "account.password": N_("Changed own password"),
    "account.password_failed": N_("Own password change refused"),
    "account.totp_enabled": N_("Turned on own two-factor authentication"),
    "account.totp_disabled": N_("Turned off own two-factor authentication"),
    "activity.search": N_("Searched the logs"),
    "activity.export": N_("Exported log search results"),
    "activity.report": N_("Viewed a report"),
    "activity.view_device": N_("Viewed a device's activity"),
    "device.revoke": N_("Revoked a device"),
    "alert.view": N_("Viewed an alert"),
    "alert.acknowledge": N_("Acknowledged an alert"),
    "alert.resolve": N_("Resolved an alert"),
    "alert.reopen": N_("Reopened an alert"),
    "alert.assign": N_("Assigned an alert"),
    "alert.comment": N_("Commented on an alert"),
    "enrollment.token_create": N_("Created an enrollment token"),
    "enrollment.token_revoke": N_("Revoked an enrollment token"),
    "user.create": N_("Created a user"),
    "user.access": N_("Changed a user's role or device groups"),
    "user.password_reset": N_("Reset a user's password"),
    "user.disable": N_("Disabled a user"),
    "user.enable": N_("Enabled a user"),
    "user.totp_reset": N_("Reset a user's two-factor authentication"),
    "audit.view": N_("Viewed the audit trail"),
    "audit.verify": N_("Verified the audit trail"),
}


def action_label(action: str) -> str:
    label = ACTION_LABELS.get(action)
    return gettext(label) if label else action


_RELATIVE = re.compile(r"(\d{1,5})([mhdw])")
_UNIT_S: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LOCAL_FORMATS: Final = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


class _BadFilter(ValueError):
    pass


def _parse_time(raw: str, zone: zoneinfo.ZoneInfo, now: int) -> int | None:
    """'' -> None; "15m"/"24h"/"7d"/"2w" back from now; or a datetime-local value in
    the console's time zone."""
    if not raw:
        return None
    relative = _RELATIVE.fullmatch(raw)
    if relative:
        return now - int(relative.group(1)) * _UNIT_S[relative.group(2)] * 1_000_000
    for fmt in _LOCAL_FORMATS:
        try:
            naive = dt.datetime.strptime(raw, fmt)  # noqa: DTZ007 - zone attached below
        except ValueError:
            continue
        if naive.year < 2000:
            break
        return int(naive.replace(tzinfo=zone).timestamp()) * 1_000_000
    raise _BadFilter(raw)


def _detail_text(entry: AuditEntry) -> list[tuple[str, str]]:
    """The detail object as (key, value) pairs; {"old", "new"} shown as old → new."""
    pairs: list[tuple[str, str]] = []
    for key, value in entry.detail_dict().items():
        if isinstance(value, dict) and set(value) == {"old", "new"}:
            text = f"{_plain(value['old'])} → {_plain(value['new'])}"
        else:
            text = _plain(value)
        pairs.append((key, text))
    return pairs


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value) or "—"
    if isinstance(value, dict):  # e.g. a search's filters
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) or "—"
    return json.dumps(value, ensure_ascii=False)


def _render(ctx: PageContext, *, report: ChainReport | None = None) -> Response:
    params = {
        name: ctx.query.get(name, "").strip()[:255]
        for name in ("actor", "action", "target", "since", "until")
    }
    raw_page = ctx.query.get("page", "1")
    page_no = int(raw_page) if raw_page.isdigit() and 0 < len(raw_page) < 6 else 1
    page_no = min(max(page_no, 1), MAX_PAGE)
    zone = zoneinfo.ZoneInfo(ctx.console.settings.server.console_timezone)
    now = now_us()
    error: str | None = None
    since_us = until_us = None
    try:
        since_us = _parse_time(params["since"], zone, now)
        until_us = _parse_time(params["until"], zone, now)
    except _BadFilter as exc:
        error = str(exc)[:40]
    if report is None:
        # Not ctx.audit(**filters): the filter names "action" and "target" are its
        # own parameters.
        append_audit(
            ctx.engine,
            actor=ctx.user.username,
            action="audit.view",
            detail={**{k: v for k, v in params.items() if v}, "page": page_no},
            client_ip=client_ip(ctx.request),
        )
    found = (
        search_audit(
            ctx.engine,
            actor=params["actor"] or None,
            action=params["action"] or None,
            target=params["target"] or None,
            since_us=since_us,
            until_us=until_us,
            offset=(page_no - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
        if error is None
        else None
    )
    actions = dict(ACTION_LABELS)
    if params["action"] and params["action"] not in actions:
        actions[params["action"]] = params["action"]

    def link(page_to: int) -> str:
        query = {k: v for k, v in params.items() if v}
        query["page"] = str(page_to)
        return "/audit?" + urlencode(query)

    pages = 0 if found is None else max(1, -(-found.total // PAGE_SIZE))
    return ctx.render(
        "audit.html",
        status=400 if error else 200,
        params=params,
        error=error,
        entries=[] if found is None else found.entries,
        total=0 if found is None else found.total,
        page=page_no,
        pages=min(pages, MAX_PAGE),
        link=link,
        actions=sorted(actions, key=lambda a: a),
        action_label=action_label,
        detail_text=_detail_text,
        report=report,
    )


@page("audit")
def audit_page(ctx: PageContext) -> Response:
    return _render(ctx)


@page("audit")
def verify(ctx: PageContext) -> Response:
    report = verify_chain(ctx.engine)
    ctx.audit(
        "audit.verify",
        "",
        entries=report.entries,
        intact=report.intact,
        problems=report.problems[:10],
    )
    return _render(ctx, report=report)


routes: list[BaseRoute] = [
    Route("/audit", audit_page, methods=["GET"]),
    Route("/audit/verify", verify, methods=["POST"]),
]
