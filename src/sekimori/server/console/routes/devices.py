"""Console: the device list (searched, filtered, sorted and paged in SQL), a device's
page (inventory, status, software, activity timeline) and revoking a device.

Every lookup goes through the user's scope: a device of another group answers 404,
exactly like a device that does not exist.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.protocol.events import EVENT_KINDS
from sekimori.protocol.events.inventory import Hardware, SoftwareSnapshot
from sekimori.server.console.event_summary import (
    decode_payload,
    kind_label,
    manager_label,
    summarize,
)
from sekimori.server.console.permissions import allowed
from sekimori.server.console.routes.alerts import severity_label, status_label
from sekimori.server.console.routes.dashboard import minimum_agent_version
from sekimori.server.console.routes.vulnerabilities import device_tab
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.alert_queries import device_open_alerts
from sekimori.server.store.device_detail import (
    collector_health,
    device_events,
    newest_event,
    timeline,
)
from sekimori.server.store.device_queries import (
    SORTS,
    DeviceQuery,
    device_in_scope,
    device_status,
    filter_choices,
    outdated_versions,
    search_devices,
    version_key,
)
from sekimori.server.store.devices import Device, revoke_device

__all__ = ["routes"]

STATUSES = ("online", "offline", "revoked")
TABS = ("overview", "software", "activity", "vulnerabilities")
SOFTWARE_CHANGES = (
    "inventory.software_installed",
    "inventory.software_removed",
    "inventory.software_upgraded",
    "inventory.software_downgraded",
)
MAX_PACKAGES_SHOWN = 2000
KIND_CHOICES = sorted({k.split(".", 1)[0] + "." for k in EVENT_KINDS}) + sorted(EVENT_KINDS)


def _int(text: str, default: int = 1) -> int:
    try:
        return max(1, min(int(text), 1_000_000))
    except ValueError:
        return default


def _device_query(ctx: PageContext) -> DeviceQuery:
    q = ctx.query
    sort = q.get("sort", "hostname")
    status = q.get("status", "")
    return DeviceQuery(
        q=q.get("q", "")[:255],
        group=q.get("group", "")[:128],
        os=q.get("os", "")[:64],
        status=status if status in STATUSES else "",
        version=q.get("version", "")[:64],
        sort=sort if sort in SORTS else "hostname",
        page=_int(q.get("page", "1")),
    )


@page("devices")
def device_list(ctx: PageContext) -> Response:
    query = _device_query(ctx)
    now = now_us()
    heartbeat = ctx.console.settings.server.heartbeat_seconds
    minimum = minimum_agent_version(ctx)
    result = search_devices(
        ctx.engine,
        ctx.scope,
        query,
        now=now,
        heartbeat_seconds=heartbeat,
        minimum_version=minimum,
    )
    context: dict[str, Any] = {
        "query": query,
        "result": result,
        "statuses": {d.id: device_status(d, now, heartbeat) for d in result.devices},
        "outdated": set(outdated_versions((d.agent_version for d in result.devices), minimum)),
        "minimum_version": minimum,
        "params": {
            k: v
            for k, v in ctx.query.items()
            if k in ("q", "group", "os", "status", "version") and v
        },
    }
    if ctx.htmx:  # typing in the search box: just the table
        return ctx.render("devices_table.html", **context)
    return ctx.render("devices.html", choices=filter_choices(ctx.engine, ctx.scope), **context)


def _overview(ctx: PageContext, device: Device) -> dict[str, Any]:
    hardware_event = newest_event(ctx.engine, ctx.scope, device.id, "inventory.hardware")
    hardware = None
    if hardware_event is not None:
        decoded = decode_payload(hardware_event.kind, hardware_event.payload)
        hardware = decoded if isinstance(decoded, Hardware) else None
    health = []
    for event in collector_health(ctx.engine, ctx.scope, device.id):
        health.append((event, decode_payload(event.kind, event.payload)))
    alerts = None  # None: not shown (no alerts permission); [] none open
    if allowed(ctx.user.role, "alerts"):
        alerts = device_open_alerts(ctx.engine, ctx.scope, device.id)
    return {
        "hardware": hardware,
        "hardware_event": hardware_event,
        "health": health,
        "open_alerts": alerts,
        "severity_label": severity_label,
        "status_label": status_label,
    }


def _software(ctx: PageContext, device: Device) -> dict[str, Any]:
    snapshot_event = newest_event(ctx.engine, ctx.scope, device.id, "inventory.software")
    snapshot = None
    if snapshot_event is not None:
        decoded = decode_payload(snapshot_event.kind, snapshot_event.payload)
        snapshot = decoded if isinstance(decoded, SoftwareSnapshot) else None
    wanted = ctx.query.get("pkg", "").strip().lower()[:128]
    packages = []
    managers: list[str] = []
    manager = ""
    if snapshot is not None:
        # The managers the agent read, then any others its packages name (an older list).
        managers = list(dict.fromkeys(snapshot.managers))
        managers += sorted({p.manager for p in snapshot.packages} - set(managers))
        manager = ctx.query.get("manager", "")
        manager = manager if manager in managers else ""
        packages = sorted(
            (
                p
                for p in snapshot.packages
                if (not wanted or wanted in p.name.lower())
                and (not manager or p.manager == manager)
            ),
            key=lambda p: (p.name, p.manager, p.architecture),
        )
    changes = [
        (e, summarize(e.kind, e.payload))
        for e in device_events(ctx.engine, ctx.scope, device.id, SOFTWARE_CHANGES, limit=50)
    ]
    return {
        "snapshot": snapshot,
        "snapshot_event": snapshot_event,
        "pkg": wanted,
        "manager": manager,
        "managers": managers,
        "manager_label": manager_label,
        "packages": packages[:MAX_PACKAGES_SHOWN],
        "packages_total": len(packages),
        "changes": changes,
    }


def _activity(ctx: PageContext, device: Device) -> dict[str, Any]:
    kind = ctx.query.get("kind", "")
    kind = kind if kind in KIND_CHOICES else ""
    page_number = _int(ctx.query.get("page", "1"))
    found = timeline(ctx.engine, ctx.scope, device.id, kind=kind, page=page_number)
    ctx.audit(
        "activity.view_device",
        device.id,
        hostname=device.hostname,
        kind=kind or "all",
        page=found.page,
    )
    return {
        "timeline": found,
        "lines": [(e, summarize(e.kind, e.payload)) for e in found.events],
        "kind": kind,
        "kind_choices": KIND_CHOICES,
    }


@page("devices")
def device_page(ctx: PageContext) -> Response:
    device = device_in_scope(ctx.engine, ctx.scope, ctx.request.path_params["device_id"][:64])
    if device is None:
        return ctx.render("not_found.html", status=404)
    tab = ctx.query.get("tab", "overview")
    tab = tab if tab in TABS else "overview"
    if tab == "activity" and not allowed(ctx.user.role, "activity"):
        return ctx.render("forbidden.html", status=403)
    if tab == "vulnerabilities" and not allowed(ctx.user.role, "vulnerabilities"):
        return ctx.render("forbidden.html", status=403)
    now = now_us()
    heartbeat = ctx.console.settings.server.heartbeat_seconds
    minimum = minimum_agent_version(ctx)
    parts = {
        "overview": _overview,
        "software": _software,
        "activity": _activity,
        "vulnerabilities": device_tab,
    }[tab]
    return ctx.render(
        "device.html",
        device=device,
        tab=tab,
        state=device_status(device, now, heartbeat),
        outdated=version_key(device.agent_version) < version_key(minimum),
        minimum_version=minimum,
        kind_label=kind_label,
        **parts(ctx, device),
    )


@page("enroll")
def device_revoke(ctx: PageContext) -> Response:
    device = device_in_scope(ctx.engine, ctx.scope, ctx.request.path_params["device_id"][:64])
    if device is None:
        return ctx.render("not_found.html", status=404)
    changed = revoke_device(ctx.engine, device.id)
    ctx.audit(
        "device.revoke",
        device.id,
        hostname=device.hostname,
        group=device.group,
        result="revoked" if changed else "already_revoked",
    )
    return RedirectResponse(f"/devices/{device.id}", status_code=303)


routes: list[BaseRoute] = [
    Route("/devices", device_list, methods=["GET"]),
    Route("/devices/{device_id}", device_page, methods=["GET"]),
    Route("/devices/{device_id}/revoke", device_revoke, methods=["POST"]),
]
