"""Console: live view of a PC's screen (permission ``live``, administrators only by
default).

* ``GET /devices/{id}/live``: the viewer page (a canvas, start and stop, the state).
* ``WS /devices/{id}/live/ws?consent=1&record=1``: the session (``record``: the PC
  also keeps a picture a second as a ``screen.frame`` event, trigger ``live``, stored
  with the other screen frames and shown in their timeline). Authenticated like every page
  (the session cookie; a session waiting for its second factor is refused), the
  role's permission and the user's scope checked (a device of another group is
  refused exactly like one that does not exist), and the Origin must be this console
  (a page elsewhere cannot open it with the user's cookie). Refusals happen before
  the handshake completes: the browser sees HTTP 403.

On the socket the server sends text messages ``{"state": "waiting" | "started" |
"refused" | "stopped", "reason": "..."}`` and one binary message per picture: a
14-byte header (big-endian: capture time in µs on the PC, u64; width, u16; height,
u16; monitor, u8; format, u8: 0 JPEG, 1 WebP, 2 PNG) then the image. The browser
ends the session by closing the socket (or sending ``stop``).

Audited: ``live.start`` when a session is requested (who, which device, whether
consent was asked, whether it is recorded) and ``live.end`` when it ends (how long it
was live, frames, how it ended) — also when the PC refused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sekimori.clock import now_us
from sekimori.protocol import LiveFrame
from sekimori.server.console.permissions import allowed
from sekimori.server.console.web import COOKIE, Console, PageContext, page
from sekimori.server.live import LiveSession, LiveSessions, LiveUnavailable
from sekimori.server.store.audit import append_audit
from sekimori.server.store.device_queries import device_in_scope
from sekimori.server.store.devices import Device
from sekimori.server.store.sessions import load_session
from sekimori.server.store.users import User, UserNotFound, get_user

__all__ = ["FRAME_HEADER", "routes"]

FRAME_HEADER = struct.Struct(">QHHBB")
_FORMATS = {"jpeg": 0, "webp": 1, "png": 2}
# What the console asks of the PC: a few pictures a second, half size.
LIVE_FPS = 4.0
LIVE_SCALE = 0.5
LIVE_QUALITY = 60


@page("live")
def viewer(ctx: PageContext) -> Response:
    device = device_in_scope(ctx.engine, ctx.scope, ctx.request.path_params["device_id"][:64])
    if device is None:
        return ctx.render("not_found.html", status=404)
    return ctx.render("live.html", device=device, online=device.id in ctx.console.connected())


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin", "")
    host = websocket.headers.get("host", "")
    return bool(origin) and origin.split("://", 1)[-1] == host


def _authorize(console: Console, token: str, device_id: str) -> tuple[User, Device] | None:
    session = load_session(console.engine, token, idle_s=console.idle_s)
    if session is None or session.mfa_pending:
        return None
    try:
        user = get_user(console.engine, session.user_id)
    except UserNotFound:
        return None
    if not allowed(user.role, "live"):
        return None
    device = device_in_scope(console.engine, user.scope, device_id)
    return None if device is None else (user, device)


def frame_message(frame: LiveFrame) -> bytes:
    header = FRAME_HEADER.pack(
        frame.capture_us,
        min(frame.width, 65535),
        min(frame.height, 65535),
        min(frame.monitor, 255),
        _FORMATS[frame.format],
    )
    return header + frame.image


async def live_socket(websocket: WebSocket) -> None:
    console: Console = websocket.app.state.console
    live: LiveSessions | None = getattr(websocket.app.state, "live", None)
    device_id = websocket.path_params["device_id"][:64]
    if not _same_origin(websocket) or live is None:
        await websocket.close(code=1008)
        return
    found = await run_in_threadpool(
        _authorize, console, websocket.cookies.get(COOKIE, ""), device_id
    )
    if found is None:
        await websocket.close(code=1008)  # before accept: the handshake gets 403
        return
    user, device = found
    consent = websocket.query_params.get("consent") == "1"
    record = websocket.query_params.get("record") == "1"
    client_ip = websocket.client.host if websocket.client else ""

    def audit(action: str, **detail: Any) -> None:
        append_audit(
            console.engine,
            actor=user.username,
            action=action,
            target=device.id,
            detail={"hostname": device.hostname, **detail},
            client_ip=client_ip,
        )

    await websocket.accept()
    try:
        session = await live.open(
            device.id,
            user.username,
            max_fps=LIVE_FPS,
            scale=LIVE_SCALE,
            quality=LIVE_QUALITY,
            consent_required=consent,
            record=record,
        )
    except LiveUnavailable as exc:
        await _send_state(websocket, "unavailable", str(exc))
        await websocket.close()
        return
    await run_in_threadpool(
        audit, "live.start", session=session.id, consent_asked=consent, recorded=record
    )
    outcome = "closed by the viewer"
    try:
        await _send_state(websocket, "waiting", "")
        outcome = await _relay(websocket, session)
    finally:
        await live.close(session, "the viewer closed the view")
        live_us = now_us() - session.started_us if session.started_us else 0
        with contextlib.suppress(Exception):
            await run_in_threadpool(
                audit,
                "live.end",
                session=session.id,
                duration_s=round(live_us / 1_000_000, 1),
                frames=session.frames,
                outcome=outcome[:500],
            )
        with contextlib.suppress(Exception):
            await websocket.close()


async def _send_state(websocket: WebSocket, state: str, reason: str) -> None:
    await websocket.send_text(json.dumps({"state": state, "reason": reason}))


async def _relay(websocket: WebSocket, session: LiveSession) -> str:
    """Relay the agent's messages until the session ends or the viewer leaves;
    returns how it ended."""

    async def from_viewer() -> str:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return "closed by the viewer"
            if message.get("text") == "stop":
                return "stopped by the viewer"

    async def from_agent() -> str:
        while True:
            message = await session.next()
            if isinstance(message, LiveFrame):
                await websocket.send_bytes(frame_message(message))
                continue
            await _send_state(websocket, message.state, message.reason)
            if message.state in ("refused", "stopped"):
                return f"{message.state}: {message.reason}" if message.reason else message.state

    tasks = [asyncio.create_task(from_viewer()), asyncio.create_task(from_agent())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        try:
            return next(iter(done)).result()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return "closed by the viewer"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# A thumbnail is one small frame of a one-shot live session: the agent applies its
# live-view policy (off: refused; consent: the PC's user is asked) and shows its
# indicator while it captures.
THUMBNAIL_SCALE = 0.15
THUMBNAIL_WAIT_SECONDS = 8.0
_MEDIA = {"jpeg": "image/jpeg", "webp": "image/webp", "png": "image/png"}


async def thumbnail(request: Request) -> Response:
    """GET /devices/{id}/thumbnail: what is on the PC's screen now, small (for the
    device list, on demand). Same rules as live view: the ``live`` permission, the
    user's groups, the PC's policy; audited as ``live.thumbnail``."""
    console: Console = request.app.state.console
    live: LiveSessions | None = getattr(request.app.state, "live", None)
    device_id = request.path_params["device_id"][:64]
    # An image another site embeds must not open a session (the cookie is
    # SameSite=Strict as well).
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin" or live is None:
        return Response("forbidden\n", status_code=403, media_type="text/plain")
    found = await run_in_threadpool(
        _authorize, console, request.cookies.get(COOKIE, ""), device_id
    )
    if found is None:
        return Response("not found\n", status_code=404, media_type="text/plain")
    user, device = found
    try:
        session = await live.open(
            device.id,
            user.username,
            max_fps=1.0,
            scale=THUMBNAIL_SCALE,
            quality=LIVE_QUALITY,
            max_seconds=int(THUMBNAIL_WAIT_SECONDS) + 2,
        )
    except LiveUnavailable as exc:
        return Response(f"{exc}\n", status_code=409, media_type="text/plain")
    outcome = "no frame in time"
    image: LiveFrame | None = None
    try:
        async with asyncio.timeout(THUMBNAIL_WAIT_SECONDS):
            while image is None:
                message = await session.next()
                if isinstance(message, LiveFrame):
                    image = message
                    outcome = "taken"
                elif message.state in ("refused", "stopped"):
                    outcome = f"{message.state}: {message.reason}"
                    break
    except TimeoutError:
        pass
    finally:
        await live.close(session, "thumbnail taken")
        client_ip = request.client.host if request.client else ""
        with contextlib.suppress(Exception):
            await run_in_threadpool(
                append_audit,
                console.engine,
                actor=user.username,
                action="live.thumbnail",
                target=device.id,
                detail={"hostname": device.hostname, "outcome": outcome[:500]},
                client_ip=client_ip,
            )
    if image is None:
        return Response(f"{outcome}\n", status_code=409, media_type="text/plain")
    return Response(
        image.image,
        media_type=_MEDIA.get(image.format, "application/octet-stream"),
        headers={"Cache-Control": "no-store"},
    )


routes: list[BaseRoute] = [
    Route("/devices/{device_id}/thumbnail", thumbnail),
    Route("/devices/{device_id}/live", viewer),
    WebSocketRoute("/devices/{device_id}/live/ws", live_socket),
]
