"""Console: stored screen frames (issue 6) — the timeline player of a device or of a
person (an OS user across devices), and the frames themselves, decrypted on the fly.

Permission "screens" (administrators only by default). Scope applies in SQL: a
device or frame outside the user's groups answers 404, like one that does not exist.
Audit: opening the player writes "screen.timeline" (whose period); every frame the
server hands out writes "screen.view" (device, seq, time) — one entry per frame shown,
playing included, so the trail tells exactly which pictures a person looked at. The
player fetches only the frame it shows (no prefetch), which bounds the volume to the
frames actually seen.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zoneinfo
from typing import Any, Final

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sekimori.server.blobs import BlobCorrupt, BlobMissing, blob_store_for
from sekimori.server.console.i18n import gettext
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.device_queries import device_in_scope
from sekimori.server.store.screen_frames import (
    FrameInfo,
    get_frame,
    latest_frame_time,
    list_frames,
)

__all__ = ["SPANS", "routes"]

log = logging.getLogger(__name__)

_MIN_US = 60_000_000
# The period around ``at`` the player lists, by name.
SPANS: Final[dict[str, int]] = {
    "10m": 10 * _MIN_US,
    "1h": 60 * _MIN_US,
    "4h": 240 * _MIN_US,
    "24h": 1440 * _MIN_US,
}
DEFAULT_SPAN = "1h"
MAX_FRAMES = 2000
_MEDIA: Final = {"jpeg": "image/jpeg", "webp": "image/webp", "png": "image/png"}
_EXT: Final = {"jpg": "jpeg", "webp": "webp", "png": "png"}
_FRAME_NAME = re.compile(r"^([0-9]{1,19})\.(jpg|webp|png)$")
_MAX_US = 2**63 - 1


def _parse_at(raw: str, zone: zoneinfo.ZoneInfo) -> int | None:
    """``at``: microseconds UTC (the jump-to links) or YYYY-MM-DDTHH:MM[:SS] in the
    console's time zone (the form). None when absent or not a time."""
    raw = raw.strip()
    if not raw:
        return None
    if raw.isdigit() and len(raw) <= 19:
        value = int(raw)
        return value if value <= _MAX_US else None
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            naive = dt.datetime.strptime(raw, fmt)  # noqa: DTZ007 - zone attached below
        except ValueError:
            continue
        if naive.year < 2000:
            return None
        return int(naive.replace(tzinfo=zone).timestamp() * 1_000_000)
    return None


def _nearest(frames: list[FrameInfo], at_us: int) -> int:
    if not frames:
        return 0
    return min(range(len(frames)), key=lambda i: (abs(frames[i].time_us - at_us), i))


def _player(
    ctx: PageContext, *, device_id: str | None, os_user: str | None, base: str
) -> dict[str, Any]:
    zone = zoneinfo.ZoneInfo(ctx.console.settings.server.console_timezone)
    raw_at = ctx.query.get("at", "")
    at_us = _parse_at(raw_at, zone)
    error = (
        gettext("Not a time: %(value)s") % {"value": raw_at[:40]}
        if raw_at and at_us is None
        else ""
    )
    span_name = ctx.query.get("span", DEFAULT_SPAN)
    span_name = span_name if span_name in SPANS else DEFAULT_SPAN
    span = SPANS[span_name]
    if at_us is None:
        at_us = latest_frame_time(ctx.engine, ctx.scope, device_id=device_id, os_user=os_user)
    frames: list[FrameInfo] = []
    since = until = 0
    if at_us is not None:
        since, until = max(0, at_us - span // 2), at_us + span // 2
        frames = list_frames(
            ctx.engine,
            ctx.scope,
            since_us=since,
            until_us=until,
            device_id=device_id,
            os_user=os_user,
            limit=MAX_FRAMES,
        )
    ctx.audit(
        "screen.timeline",
        device_id or "",
        os_user=os_user,
        since_us=since,
        until_us=until,
        frames=len(frames),
    )
    local_at = (
        dt.datetime.fromtimestamp(at_us / 1_000_000, tz=zone).strftime("%Y-%m-%dT%H:%M")
        if at_us is not None
        else ""
    )
    return {
        "frames": frames,
        "current": _nearest(frames, at_us) if at_us is not None else 0,
        "at_us": at_us,
        "local_at": local_at,
        "since_us": since,
        "until_us": until,
        "span": span_name,
        "spans": list(SPANS),
        "span_us": span,
        "error": error,
        "base": base,
        "truncated": len(frames) >= MAX_FRAMES,
    }


@page("screens")
def device_screens(ctx: PageContext) -> Response:
    device = device_in_scope(ctx.engine, ctx.scope, ctx.request.path_params["device_id"][:64])
    if device is None:
        return ctx.render("not_found.html", status=404)
    return ctx.render(
        "screens.html",
        device=device,
        person=None,
        **_player(ctx, device_id=device.id, os_user=None, base=f"/devices/{device.id}/screens"),
    )


@page("screens")
def person_screens(ctx: PageContext) -> Response:
    person = ctx.query.get("user", "").strip()[:256]
    if not person:
        return ctx.render("screens.html", device=None, person="", frames=[], base="/screens")
    return ctx.render(
        "screens.html",
        device=None,
        person=person,
        **_player(ctx, device_id=None, os_user=person, base="/screens"),
    )


@page("screens")
def frame_image(ctx: PageContext) -> Response:
    device_id = ctx.request.path_params["device_id"][:64]
    name = _FRAME_NAME.match(ctx.request.path_params["name"])
    if name is None:
        return ctx.render("not_found.html", status=404)
    seq = int(name.group(1))
    frame = get_frame(ctx.engine, ctx.scope, device_id, seq) if seq < 2**63 else None
    if frame is None or _EXT[name.group(2)] != frame.format:
        return ctx.render("not_found.html", status=404)
    blobs = blob_store_for(ctx.console.settings.data_path)
    try:
        data = blobs.get(frame.sha256)
    except (BlobMissing, BlobCorrupt) as exc:
        log.error("screen frame %s/%s: %s", device_id, seq, exc)
        ctx.audit(
            "screen.view_failed",
            device_id,
            hostname=frame.hostname,
            seq=seq,
            time_us=frame.time_us,
            error=str(exc),
        )
        missing = isinstance(exc, BlobMissing)
        return Response(
            "the stored picture is missing"
            if missing
            else "the stored picture failed its integrity check and is not shown",
            status_code=404 if missing else 500,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )
    ctx.audit(
        "screen.view",
        device_id,
        hostname=frame.hostname,
        seq=seq,
        time_us=frame.time_us,
        os_user=frame.os_user,
        monitor=frame.monitor,
    )
    return Response(
        data,
        media_type=_MEDIA[frame.format],
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


routes: list[BaseRoute] = [
    Route("/devices/{device_id}/screens", device_screens, methods=["GET"]),
    Route("/screens", person_screens, methods=["GET"]),
    Route("/screens/frames/{device_id}/{name}", frame_image, methods=["GET"]),
]
