"""Console: vulnerability posture (issue 8) — the vulnerability list and pages, a
device's findings (its page's tab), fleet patch compliance over time, the agents'
versions, feed status and upload, and exceptions (accepted findings).

Everything about devices goes through the user's scope in SQL (store/vulns.py,
store/vuln_console.py): an operator sees only their groups' PCs and counts.
Vulnerabilities themselves are public data. Views are not audited (inventory, like
the device pages); exceptions and feed uploads are.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.server.alerting.state_rules import AGENT_OUTDATED
from sekimori.server.console.i18n import N_, gettext
from sekimori.server.console.permissions import allowed
from sekimori.server.console.vuln_forms import (
    ExceptionForm,
    exception_form_from,
    expiry_day,
)
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.device_queries import device_in_scope
from sekimori.server.store.devices import Device
from sekimori.server.store.rule_config import load_rule_config
from sekimori.server.store.vuln_console import agent_versions, exception_groups
from sekimori.server.store.vulns import (
    VULN_SORTS,
    FeedStatus,
    VulnDetail,
    VulnException,
    compliance_series,
    create_exception,
    delete_exception,
    device_findings,
    exposed_devices,
    feed_status,
    get_exception,
    get_vulnerability,
    list_exceptions,
    list_vulnerabilities,
    update_exception,
)
from sekimori.server.vuln.feeds import FeedError
from sekimori.server.vuln.importer import import_feed

__all__ = ["dashboard_card", "device_tab", "routes", "severity_label"]

PAGE_SIZE: Final = 50
EXPOSED_SHOWN: Final = 500
SEVERITIES: Final = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "NONE")
_SEVERITY_LABELS: Final[dict[str, str]] = {
    "CRITICAL": N_("Critical"),
    "HIGH": N_("High"),
    "MEDIUM": N_("Medium"),
    "LOW": N_("Low"),
    "NONE": N_("None"),
    "": N_("Unknown"),
}
_FEED_LABELS: Final[dict[str, str]] = {
    "osv": N_("OSV (Debian, Ubuntu, PyPI, npm)"),
    "kev": N_("CISA Known Exploited Vulnerabilities"),
    "nvd": N_("NVD CVE (CPE)"),
}
# Compliance: the thresholds offered, and the days the chart covers.
MAX_AGE_CHOICES: Final = (0, 7, 14, 30, 60, 90)
WINDOWS: Final = (7, 30, 90)
# A console upload is read into memory whole to be parsed: larger feeds (the full
# NVD set) go through `sekimori vuln import` on the server.
MAX_FEED_UPLOAD_BYTES: Final = 256 * 1024 * 1024
_FORM_OVERHEAD: Final = 64 * 1024


def severity_label(severity: str) -> str:
    return gettext(_SEVERITY_LABELS.get(severity, _SEVERITY_LABELS[""]))


def feed_label(kind: str) -> str:
    return gettext(_FEED_LABELS[kind]) if kind in _FEED_LABELS else kind


def _int(text: str, default: int, low: int = 1, high: int = 1_000_000) -> int:
    try:
        return max(low, min(int(text), high))
    except ValueError:
        return default


def _stale(ctx: PageContext, now: int) -> list[FeedStatus]:
    days = ctx.console.settings.server.vuln.stale_days
    return [s for s in feed_status(ctx.engine, now_us=now, stale_days=days) if s.stale]


def _common(ctx: PageContext, now: int) -> dict[str, Any]:
    return {
        "stale_feeds": _stale(ctx, now),
        "stale_days": ctx.console.settings.server.vuln.stale_days,
        "severity_label": severity_label,
        "feed_label": feed_label,
        "now": now,
    }


# --- the list ----------------------------------------------------------------------


@page("vulnerabilities")
def vuln_list(ctx: PageContext) -> Response:
    q = ctx.query
    now = now_us()
    search = q.get("q", "").strip()[:255]
    sort = q.get("sort", "-exposed")
    sort = sort if sort in VULN_SORTS else "-exposed"
    severity = q.get("severity", "")
    severity = severity if severity in SEVERITIES else ""
    kev = q.get("kev", "") == "1"
    page_number = _int(q.get("page", "1"), 1)
    result = list_vulnerabilities(
        ctx.engine,
        ctx.scope,
        now_us=now,
        search=search,
        known_exploited_only=kev,
        severity=severity,
        sort=sort,
        limit=PAGE_SIZE,
        offset=(page_number - 1) * PAGE_SIZE,
    )
    pages = max(1, -(-result.total // PAGE_SIZE))
    params = {
        k: v for k, v in {"q": search, "severity": severity, "kev": "1" if kev else ""}.items() if v
    }
    return ctx.render(
        "vulns.html",
        result=result,
        search=search,
        sort=sort,
        severity=severity,
        kev=kev,
        page=page_number,
        pages=pages,
        params=params,
        severities=SEVERITIES,
        **_common(ctx, now),
    )


# --- one vulnerability ----------------------------------------------------------------


def references(vuln: VulnDetail) -> list[tuple[str, str]]:
    """Links to the public records of a vulnerability (label, URL): its OSV page, the
    NVD page of each CVE name, and the KEV catalog when it is known exploited."""
    links: list[tuple[str, str]] = []
    if vuln.feed == "osv":
        links.append(("OSV", f"https://osv.dev/vulnerability/{vuln.id}"))
    cves = [a for a in (vuln.id, *vuln.aliases) if a.startswith("CVE-")]
    links += [(f"NVD {cve}", f"https://nvd.nist.gov/vuln/detail/{cve}") for cve in cves]
    if vuln.known_exploited and cves:
        links.append(
            (
                "CISA KEV",
                "https://www.cisa.gov/known-exploited-vulnerabilities-catalog"
                f"?search_api_fulltext={cves[0]}",
            )
        )
    return links


@page("vulnerabilities")
def vuln_page(ctx: PageContext) -> Response:
    vuln = get_vulnerability(ctx.engine, ctx.request.path_params["vuln_id"][:128])
    if vuln is None:
        return ctx.render("not_found.html", status=404)
    now = now_us()
    exposed = exposed_devices(
        ctx.engine, ctx.scope, vuln.id, now_us=now, include_hidden=True, limit=EXPOSED_SHOWN
    )
    return ctx.render(
        "vulns_detail.html",
        vuln=vuln,
        exposed=exposed,
        exposed_shown=EXPOSED_SHOWN,
        open_count=sum(1 for e in exposed if e.hidden_until_us is None),
        exceptions=list_exceptions(ctx.engine, ctx.scope, now_us=now, vuln_id=vuln.id),
        references=references(vuln),
        **_common(ctx, now),
    )


# --- a device's tab (devices.py calls this) --------------------------------------------


def device_tab(ctx: PageContext, device: Device) -> dict[str, Any]:
    """The device page's vulnerabilities tab: open findings, and accepted ones with
    the exception that covers them."""
    now = now_us()
    findings = device_findings(ctx.engine, ctx.scope, device.id, now_us=now, include_hidden=True)
    group_ids = {name: gid for gid, name in exception_groups(ctx.engine, ctx.scope)}
    group_id = group_ids.get(device.group)
    covering: dict[str, VulnException] = {}
    for e in list_exceptions(ctx.engine, ctx.scope, now_us=now):
        if e.device_id == device.id or (group_id is not None and e.group_id == group_id):
            covering.setdefault(e.vuln_id, e)
    return {
        "findings": [f for f in findings if f.hidden_until_us is None],
        "accepted": [(f, covering.get(f.vuln_id)) for f in findings if f.hidden_until_us],
        **_common(ctx, now),
    }


# --- compliance -------------------------------------------------------------------------


def _day_label(day_us: int) -> str:
    # The chart's days are UTC days (store/vulns.py compliance_series).
    return dt.datetime.fromtimestamp(day_us / 1_000_000, tz=dt.UTC).strftime("%m-%d")


@page("vulnerabilities")
def compliance_page(ctx: PageContext) -> Response:
    now = now_us()
    settings = ctx.console.settings.server
    default_age = settings.vuln.compliance_max_age_days
    max_age = _int(ctx.query.get("days", str(default_age)), default_age, low=0, high=365)
    window = _int(ctx.query.get("window", "30"), 30)
    window = window if window in WINDOWS else 30
    points = compliance_series(ctx.engine, ctx.scope, now_us=now, days=window, max_age_days=max_age)
    chart = {
        "type": "line",
        "labels": [_day_label(p.day_us) for p in points],
        "datasets": [
            {
                "label": gettext("Compliant PCs (%)"),
                "data": [round(p.share * 100, 1) for p in points],
            }
        ],
    }
    minimum = settings.minimum_agent_version
    versions = agent_versions(ctx.engine, ctx.scope, minimum=minimum)
    with ctx.engine.connect() as conn:
        enabled = load_rule_config(conn).enabled.get(AGENT_OUTDATED.id, AGENT_OUTDATED.enabled)
    return ctx.render(
        "vulns_compliance.html",
        points=points,
        today=points[-1] if points else None,
        chart=chart,
        max_age=max_age,
        default_age=default_age,
        max_age_choices=sorted({*MAX_AGE_CHOICES, default_age, max_age}),
        window=window,
        windows=WINDOWS,
        versions=versions,
        minimum_version=minimum,
        outdated_rule_enabled=enabled,
        outdated_rule_id=AGENT_OUTDATED.id,
        **_common(ctx, now),
    )


# --- feeds --------------------------------------------------------------------------------


def _feeds_page(
    ctx: PageContext, *, status: int = 200, error: str = "", imported: str = ""
) -> Response:
    now = now_us()
    days = ctx.console.settings.server.vuln.stale_days
    return ctx.render(
        "vulns_feeds.html",
        status=status,
        feeds=feed_status(ctx.engine, now_us=now, stale_days=days),
        error=error,
        imported=imported,
        max_upload_mib=MAX_FEED_UPLOAD_BYTES // (1024 * 1024),
        **_common(ctx, now),
    )


@page("vulnerabilities")
def feeds_page(ctx: PageContext) -> Response:
    return _feeds_page(ctx, imported=ctx.query.get("imported", "")[:8])


@page("vuln_manage", max_files=1, max_body=MAX_FEED_UPLOAD_BYTES + _FORM_OVERHEAD)
def feed_upload(ctx: PageContext) -> Response:
    upload = ctx.form.get("file") if ctx.form is not None else None
    kind = ctx.field("kind")
    kind = kind if kind in _FEED_LABELS else ""
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _feeds_page(ctx, status=400, error=gettext("Choose a feed file to upload."))
    upload.file.seek(0)
    data = upload.file.read(MAX_FEED_UPLOAD_BYTES + 1)
    name = upload.filename[:255]
    if len(data) > MAX_FEED_UPLOAD_BYTES:
        error = gettext("The file is larger than %(size)s MiB.") % {
            "size": MAX_FEED_UPLOAD_BYTES // (1024 * 1024)
        }
        return _feeds_page(ctx, status=400, error=error)
    try:
        record = import_feed(
            ctx.engine,
            data,
            source=f"upload:{name}",
            imported_by=ctx.user.username,
            now_us=now_us(),
            kind=kind or None,
        )
    except FeedError as exc:
        ctx.audit(
            "vuln.feed.import", name, result="refused", kind=kind or "auto", error=str(exc)[:500]
        )
        error = gettext("The feed was refused and nothing was changed: %(reason)s") % {
            "reason": str(exc)
        }
        return _feeds_page(ctx, status=400, error=error)
    ctx.audit(
        "vuln.feed.import",
        name,
        result="imported",
        kind=record.kind,
        records=record.records,
        bytes=len(data),
    )
    return RedirectResponse(f"/vulnerabilities/feeds?imported={record.kind}", status_code=303)


# --- exceptions ------------------------------------------------------------------------------


def _exception_rows(ctx: PageContext, items: list[VulnException]) -> list[dict[str, Any]]:
    names = dict(exception_groups(ctx.engine, ctx.scope))
    rows = []
    for e in items:
        device = device_in_scope(ctx.engine, ctx.scope, e.device_id) if e.device_id else None
        rows.append(
            {
                "e": e,
                "device": device,
                "group": names.get(e.group_id) if e.group_id is not None else None,
            }
        )
    return rows


@page("vulnerabilities")
def exceptions_page(ctx: PageContext) -> Response:
    now = now_us()
    expired = ctx.query.get("expired", "") == "1"
    items = list_exceptions(ctx.engine, ctx.scope, now_us=now, include_expired=expired)
    return ctx.render(
        "vulns_exceptions.html",
        rows=_exception_rows(ctx, items[:500]),
        expired=expired,
        **_common(ctx, now),
    )


def _form_page(
    ctx: PageContext,
    form: ExceptionForm,
    *,
    errors: dict[str, str] | None = None,
    existing: VulnException | None = None,
    status: int = 200,
) -> Response:
    now = now_us()
    return ctx.render(
        "vulns_exception_form.html",
        status=status,
        form=form,
        errors=errors or {},
        existing=existing,
        groups=exception_groups(ctx.engine, ctx.scope),
        **_common(ctx, now),
    )


@page("vuln_manage")
def new_exception_page(ctx: PageContext) -> Response:
    q = ctx.query
    form = ExceptionForm(
        vuln_id=q.get("vuln", "")[:128],
        target="group" if q.get("group") else "device",
        device_id=q.get("device", "")[:64],
        group_id=q.get("group", "")[:16],
        package=q.get("package", "")[:255],
        reason="",
        expires="",
    )
    return _form_page(ctx, form)


@page("vuln_manage")
def create_exception_action(ctx: PageContext) -> Response:
    now = now_us()
    timezone = ctx.console.settings.server.console_timezone
    form = exception_form_from(ctx.field)
    errors = form.errors(now, timezone)
    vuln = get_vulnerability(ctx.engine, form.vuln_id) if form.vuln_id else None
    if form.vuln_id and vuln is None:
        errors["vuln_id"] = gettext("No such vulnerability in the imported feeds.")
    device = None
    group_id = None
    if form.target == "device" and "device_id" not in errors:
        device = device_in_scope(ctx.engine, ctx.scope, form.device_id)
        if device is None:
            errors["device_id"] = gettext("No such device in your groups.")
    if form.target == "group" and "group_id" not in errors:
        allowed_groups = dict(exception_groups(ctx.engine, ctx.scope))
        group_id = int(form.group_id)
        if group_id not in allowed_groups:
            errors["group_id"] = gettext("No such group among yours.")
    if errors:
        return _form_page(ctx, form, errors=errors, status=400)
    expires = expiry_day(form.expires, timezone)
    exception_id = create_exception(
        ctx.engine,
        vuln_id=form.vuln_id,
        reason=form.reason,
        expires_us=expires,
        created_by=ctx.user.username,
        now_us=now,
        device_id=device.id if device is not None else None,
        group_id=group_id,
        package=form.package or None,
    )
    ctx.audit(
        "vuln.exception.create",
        form.vuln_id,
        exception_id=exception_id,
        device=device.hostname if device is not None else None,
        device_id=device.id if device is not None else None,
        group_id=group_id,
        package=form.package or None,
        reason=form.reason,
        expires_us=expires,
    )
    return RedirectResponse(f"/vulnerabilities/{form.vuln_id}", status_code=303)


def _exception_id(ctx: PageContext) -> int | None:
    text = ctx.request.path_params["exception_id"]
    return int(text) if text.isdigit() and len(text) < 12 else None


@page("vuln_manage")
def exception_page(ctx: PageContext) -> Response:
    ident = _exception_id(ctx)
    existing = None if ident is None else get_exception(ctx.engine, ctx.scope, ident)
    if existing is None:
        return ctx.render("not_found.html", status=404)
    timezone = ctx.console.settings.server.console_timezone
    return _form_page(ctx, ExceptionForm.of(existing, timezone), existing=existing)


@page("vuln_manage")
def update_exception_action(ctx: PageContext) -> Response:
    ident = _exception_id(ctx)
    existing = None if ident is None else get_exception(ctx.engine, ctx.scope, ident)
    if existing is None:
        return ctx.render("not_found.html", status=404)
    now = now_us()
    timezone = ctx.console.settings.server.console_timezone
    form = ExceptionForm.of(existing, timezone).with_edits(
        reason=ctx.field("reason"), expires=ctx.field("expires")
    )
    errors = {k: v for k, v in form.errors(now, timezone).items() if k in ("reason", "expires")}
    if errors:
        return _form_page(ctx, form, errors=errors, existing=existing, status=400)
    expires = expiry_day(form.expires, timezone)
    update_exception(
        ctx.engine, ctx.scope, existing.id, now_us=now, reason=form.reason, expires_us=expires
    )
    ctx.audit(
        "vuln.exception.update",
        existing.vuln_id,
        exception_id=existing.id,
        reason=form.reason,
        expires_us=expires,
        before_reason=existing.reason,
        before_expires_us=existing.expires_us,
    )
    return RedirectResponse("/vulnerabilities/exceptions", status_code=303)


@page("vuln_manage")
def delete_exception_action(ctx: PageContext) -> Response:
    ident = _exception_id(ctx)
    existing = None if ident is None else get_exception(ctx.engine, ctx.scope, ident)
    if existing is None or not delete_exception(ctx.engine, ctx.scope, existing.id):
        return ctx.render("not_found.html", status=404)
    ctx.audit(
        "vuln.exception.delete",
        existing.vuln_id,
        exception_id=existing.id,
        device_id=existing.device_id,
        group_id=existing.group_id,
        reason=existing.reason,
    )
    return RedirectResponse("/vulnerabilities/exceptions", status_code=303)


# --- the dashboard's card (dashboard.py calls this) ---------------------------------------


def dashboard_card(ctx: PageContext) -> dict[str, Any]:
    """Known-exploited vulnerabilities on the user's PCs and stale feeds; empty for
    users without the vulnerabilities permission."""
    if not allowed(ctx.user.role, "vulnerabilities"):
        return {}
    now = now_us()
    kev = list_vulnerabilities(
        ctx.engine, ctx.scope, now_us=now, known_exploited_only=True, limit=5
    )
    return {
        "vuln_card": True,
        "kev_list": kev,
        "vuln_stale_feeds": _stale(ctx, now),
        "vuln_stale_days": ctx.console.settings.server.vuln.stale_days,
        "feed_label": feed_label,
        "vuln_severity_label": severity_label,
    }


routes: list[BaseRoute] = [
    Route("/vulnerabilities", vuln_list, methods=["GET"]),
    Route("/vulnerabilities/compliance", compliance_page, methods=["GET"]),
    Route("/vulnerabilities/feeds", feeds_page, methods=["GET"]),
    Route("/vulnerabilities/feeds/upload", feed_upload, methods=["POST"]),
    Route("/vulnerabilities/exceptions", exceptions_page, methods=["GET"]),
    Route("/vulnerabilities/exceptions/new", new_exception_page, methods=["GET"]),
    Route("/vulnerabilities/exceptions/new", create_exception_action, methods=["POST"]),
    Route("/vulnerabilities/exceptions/{exception_id}", exception_page, methods=["GET"]),
    Route("/vulnerabilities/exceptions/{exception_id}", update_exception_action, methods=["POST"]),
    Route(
        "/vulnerabilities/exceptions/{exception_id}/delete",
        delete_exception_action,
        methods=["POST"],
    ),
    Route("/vulnerabilities/{vuln_id}", vuln_page, methods=["GET"]),
]
