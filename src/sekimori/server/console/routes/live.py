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

Remote control (docs/live.md, "Remote control"): the page sends ``control`` (the user
asked for control: the server starts looking for a grant) and JSON lists of input
events (``sekimori.protocol.live_input``, at most 64 a message). They are forwarded
to the PC only while ``store.remote_control.control_grant`` finds a signed
``remote_control`` command of this user for this PC that the PC answered ``done``
within its ``max_seconds`` — and not after the PC said control ended. The server
tells the page ``{"control": "ready" | "granted" | "ended" | "none" | "invalid",
"reason": ..., "until_us": ...}``. Audited: ``live.control_start`` when a grant is
first seen for the session (nonce, signers, until) and ``live.control_end`` when it
ends (reason, events forwarded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sekimori.clock import now_us
from sekimori.protocol import LiveFrame
from sekimori.protocol.live_input import decode_input_events
from sekimori.protocol.messages import LiveControl
from sekimori.server.console.permissions import allowed
from sekimori.server.console.web import COOKIE, Console, PageContext, page
from sekimori.server.live import LiveSession, LiveSessions, LiveUnavailable
from sekimori.server.store.audit import append_audit
from sekimori.server.store.device_queries import device_in_scope
from sekimori.server.store.devices import Device
from sekimori.server.store.remote_control import ControlGrant, control_grant
from sekimori.server.store.sessions import load_session
from sekimori.server.store.users import User, UserNotFound, get_user

__all__ = ["FRAME_HEADER", "routes"]

FRAME_HEADER = struct.Struct(">QHHBB")
_FORMATS = {"jpeg": 0, "webp": 1, "png": 2}
# What the console asks of the PC: a few pictures a second, half size.
LIVE_FPS = 4.0
LIVE_SCALE = 0.5
LIVE_QUALITY = 60
# How often the store is asked again whether the user may control the PC.
CONTROL_RECHECK_SECONDS = 1.0


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
    control = _Control(console, live, session, user=user.username, audit=audit, websocket=websocket)
    try:
        await _send_state(websocket, "waiting", "")
        outcome = await _relay(websocket, session, control)
    finally:
        with contextlib.suppress(Exception):
            await control.end("the live view was closed")
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


class _Control:
    """Remote control over one viewer's session: whether a grant exists (asked of the
    store at most every ``CONTROL_RECHECK_SECONDS``), forwarding, audit, and what the
    page is told."""

    def __init__(
        self,
        console: Console,
        live: LiveSessions,
        session: LiveSession,
        *,
        user: str,
        audit: Callable[..., None],
        websocket: WebSocket,
    ) -> None:
        self._console = console
        self._live = live
        self._session = session
        self._user = user
        self._audit = audit
        self._websocket = websocket
        self.wanted = False  # the page asked for control
        self._grant: ControlGrant | None = None
        self._checked = -1e9
        self._started: ControlGrant | None = None  # audited live.control_start
        self._ended: set[str] = set()  # nonces the PC said ended
        self._told = ""
        self._events = 0

    async def _tell(self, control: str, reason: str = "", until_us: int = 0) -> None:
        if control in ("none", "ready") and (
            control == self._told or (control == "ready" and self._told == "granted")
        ):
            return  # said already (the PC's "granted" says more than "ready")
        if control != "invalid":
            self._told = control
        await self._websocket.send_text(
            json.dumps({"control": control, "reason": reason, "until_us": until_us})
        )

    async def current(self) -> ControlGrant | None:
        """The grant in force for this user and PC, or None (and the page is told)."""
        stale = time.monotonic() - self._checked >= CONTROL_RECHECK_SECONDS
        # The PC said it granted control before its result reached the store: look
        # again at each input until the store has it.
        stale = stale or (self._grant is None and self._told == "granted")
        if stale or (self._grant is not None and self._grant.until_us <= now_us()):
            self._checked = time.monotonic()
            self._grant = await run_in_threadpool(
                control_grant, self._console.engine, self._session.device_id, self._user, now_us()
            )
        grant = self._grant
        if grant is not None and (grant.until_us <= now_us() or grant.nonce in self._ended):
            grant = None
        started = self._started
        if started is not None and (grant is None or grant.nonce != started.nonce):
            reason = "the grant expired" if started.until_us <= now_us() else "another grant"
            await self.end(reason)
        if grant is None:
            await self._tell("none", "no signed remote-control command allowed by the PC's user")
            return None
        if self._started is None:
            self._started = grant
            await run_in_threadpool(
                self._audit,
                "live.control_start",
                session=self._session.id,
                nonce=grant.nonce,
                signers=list(grant.signers),
                until_us=grant.until_us,
            )
        await self._tell("ready", "", grant.until_us)
        return grant

    async def from_viewer(self, text: str) -> None:
        if text == "control":
            self.wanted = True
            await self.current()
            return
        try:
            events = decode_input_events(text)
        except ValueError as exc:
            await self._tell("invalid", str(exc)[:300])
            return
        grant = await self.current()
        if grant is None:
            return
        try:
            await self._live.send_input(self._session, grant.nonce, events)
        except LiveUnavailable as exc:
            await self._tell("none", str(exc))
            return
        self._events += len(events)

    async def from_agent(self, message: LiveControl) -> None:
        if message.state == "ended" and self._grant is not None:
            self._ended.add(self._grant.nonce)
        await self._tell(message.state, message.reason, message.until_us)
        if message.state == "ended":
            await self.end(f"the PC ended it: {message.reason}")

    async def watch(self) -> None:
        """While the page waits for control, look for the grant (it appears once the
        command is signed and the PC's user allowed it)."""
        while True:
            await asyncio.sleep(CONTROL_RECHECK_SECONDS)
            if self.wanted or self._started is not None:
                await self.current()

    async def end(self, reason: str) -> None:
        started, self._started = self._started, None
        if started is None:
            return
        await run_in_threadpool(
            self._audit,
            "live.control_end",
            session=self._session.id,
            nonce=started.nonce,
            events=self._events,
            reason=reason[:500],
        )
        self._events = 0


async def _relay(websocket: WebSocket, session: LiveSession, control: _Control) -> str:
    """Relay the agent's messages until the session ends or the viewer leaves;
    returns how it ended."""

    async def from_viewer() -> str:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return "closed by the viewer"
            text = message.get("text")
            if text == "stop":
                return "stopped by the viewer"
            if text:
                await control.from_viewer(text)

    async def from_agent() -> str:
        while True:
            message = await session.next()
            if isinstance(message, LiveFrame):
                await websocket.send_bytes(frame_message(message))
                continue
            if isinstance(message, LiveControl):
                await control.from_agent(message)
                continue
            await _send_state(websocket, message.state, message.reason)
            if message.state in ("refused", "stopped"):
                return f"{message.state}: {message.reason}" if message.reason else message.state

    async def watch() -> str:
        await control.watch()
        return "stopped"  # never: it loops until cancelled

    tasks = [
        asyncio.create_task(from_viewer()),
        asyncio.create_task(from_agent()),
        asyncio.create_task(watch()),
    ]
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
    found = await run_in_threadpool(_authorize, console, request.cookies.get(COOKIE, ""), device_id)
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
                elif isinstance(message, LiveControl):
                    continue
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
