"""Live view on the agent: answer the server's ``live_start`` with pictures of the
screen, for as long as the session lasts and the PC's policy allows.

A session, one at a time:

1. the policy kept by the agent decides first (``Policy.live_view``): ``off`` (the
   default) refuses; ``consent`` (or a request that asks for consent) shows the
   consent dialog and refuses unless the person allows within the timeout;
2. the indicator (a red bar at the top of the screen naming the viewer) is shown
   before the first picture is taken, and stays until the last one is sent;
3. pictures are grabbed and encoded in a thread of the session's own (the X
   connection is not shared) at most ``max_fps`` times a second and sent as
   ``live_frame`` — straight on the connection, never through the outbox: a picture
   that cannot be sent now is worth nothing later;
4. the session ends on ``live_stop``, when the connection drops, after its maximum
   duration (the shorter of the request's and the policy's), or on a capture error;
   the agent answers ``live_state(stopped)`` when it still can.

The agent still dials out only: nothing here listens on a port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sekimori.agent.platform.linux.display import (
    NoDisplay,
    RemoteDisplay,
    WaylandSession,
    find_display,
)
from sekimori.clock import now_us
from sekimori.protocol import MAX_LIVE_FRAME_BYTES, LiveFrame, LiveStart, LiveState, LiveStop
from sekimori.protocol.events.screen import ScreenFrame
from sekimori.protocol.messages import Message
from sekimori.protocol.policy import LiveViewPolicy

if TYPE_CHECKING:
    from sekimori.agent.indicator import Indicator
    from sekimori.agent.screens import EncodedFrame, ImageFormat, ScreenGrabber
    from sekimori.agent.screens import Monitor as ScreenMonitor

__all__ = ["LiveView", "display_settings"]

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]
# Keeps a recorded picture: (payload, capture time µs) -> into the outbox.
Record = Callable[[ScreenFrame, int], object]
# A recorded session keeps at most one picture per monitor this often.
RECORD_EVERY_SECONDS = 1.0


def display_settings(collectors: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The X display (and cookie file) the agent's settings name for screens, else for
    the window collector ("" when unset: the environment, then discovery)."""
    for name in ("screens", "window"):
        section = collectors.get(name) or {}
        if section.get("display"):
            return str(section["display"]), str(section.get("xauthority") or "")
    return "", ""


@dataclass
class _Session:
    start: LiveStart
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    task: asyncio.Task[None] | None = None


class LiveView:
    """``policy()`` gives the live-view section of the policy in force;
    ``display``/``xauthority`` come from the agent's settings ("" = find it)."""

    def __init__(
        self,
        policy: Callable[[], LiveViewPolicy],
        display: str = "",
        xauthority: str = "",
        record: Record | None = None,
    ) -> None:
        self._policy = policy
        self._record = record
        self._display = display
        self._xauthority = xauthority
        self._session: _Session | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> str | None:
        return self._session.start.session_id if self._session else None

    def start(self, message: LiveStart, send: Send) -> None:
        """Begin a session (its work runs in a task of its own)."""
        if self._session is not None:
            reason = "another live-view session is running on this PC"
            refusal = asyncio.create_task(_quiet_send(send, _state(message, "refused", reason)))
            self._pending.add(refusal)
            refusal.add_done_callback(self._pending.discard)
            return
        session = _Session(message)
        self._session = session
        session.task = asyncio.create_task(self._run(session, send))

    def stop(self, message: LiveStop) -> None:
        session = self._session
        if session is not None and session.start.session_id == message.session_id:
            session.reason = message.reason or "stopped by the viewer"
            session.cancel.set()

    async def stop_all(self, reason: str) -> None:
        """End any session now and wait until its indicator is gone (the connection
        dropped: nobody is watching any more)."""
        session = self._session
        if session is None:
            return
        session.reason = session.reason or reason
        session.cancel.set()
        if session.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await session.task

    async def _run(self, session: _Session, send: Send) -> None:
        start = session.start
        try:
            await self._session_body(session, send)
        except Exception as exc:  # noqa: BLE001 - any failure ends the session, reported
            log.warning("live view %s failed: %s", start.session_id, exc)
            await _quiet_send(send, _state(start, "stopped", f"error on the PC: {exc}"))
        finally:
            self._session = None

    async def _session_body(self, session: _Session, send: Send) -> None:
        start = session.start
        policy = self._policy()
        if policy.mode == "off":
            await send(_state(start, "refused", "live view is not allowed by this PC's policy"))
            return
        # Imported on the first session allowed: X, Pillow and mss stay out of an agent
        # that is never watched (its memory footprint is a goal of its own).
        from sekimori.agent.indicator import Indicator, ask_consent  # noqa: PLC0415
        from sekimori.agent.screens import ScreenGrabber  # noqa: PLC0415

        try:
            target = find_display(
                display=self._display, xauthority=self._xauthority, env=os.environ
            )
        except (NoDisplay, WaylandSession, RemoteDisplay, OSError) as exc:
            await send(_state(start, "refused", f"no screen to show: {exc}"))
            return
        xauthority = target.xauthority
        if policy.mode == "consent" or start.consent_required:
            log.info("live view %s: asking the user for consent", start.session_id)
            allowed = await asyncio.to_thread(
                ask_consent,
                target.display,
                xauthority,
                start.viewer,
                float(policy.consent_timeout_seconds),
                session.cancel,
            )
            if not allowed:
                reason = session.reason if session.cancel.is_set() else "the user did not allow it"
                await send(_state(start, "refused", reason))
                return
        if session.cancel.is_set():
            await send(_state(start, "stopped", session.reason))
            return
        limit = min(float(start.max_seconds), policy.max_minutes * 60.0)
        recording = start.record and self._record is not None
        # One thread for the X connections of this session (not thread-safe).
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="live")
        loop = asyncio.get_running_loop()
        indicator: Indicator | None = None
        grabber: ScreenGrabber | None = None
        try:
            indicator = await loop.run_in_executor(
                pool, Indicator, target.display, xauthority, start.viewer, recording
            )
            grabber = await loop.run_in_executor(pool, ScreenGrabber, target.display, xauthority)
            log.info("live view %s for %s started", start.session_id, start.viewer)
            await send(_state(start, "started"))
            reason = await self._stream(session, send, pool, grabber, limit)
            await send(_state(start, "stopped", reason))
        finally:
            if grabber is not None:
                await loop.run_in_executor(pool, grabber.close)
            if indicator is not None:
                await loop.run_in_executor(pool, indicator.close)
            pool.shutdown(wait=False)
            log.info("live view %s ended", start.session_id)

    async def _stream(
        self,
        session: _Session,
        send: Send,
        pool: concurrent.futures.ThreadPoolExecutor,
        grabber: ScreenGrabber,
        limit: float,
    ) -> str:
        from sekimori.agent.screens import CaptureError, encode  # noqa: PLC0415

        start = session.start
        loop = asyncio.get_running_loop()
        monitors = grabber.monitors()
        if start.monitor:
            if start.monitor > len(monitors):
                return f"this PC has no monitor {start.monitor}"
            monitors = [monitors[start.monitor - 1]]
        period = 1.0 / start.max_fps
        ends = time.monotonic() + limit
        seq = 0
        recorded: dict[int, float] = {}
        fmt: ImageFormat = "webp" if start.format == "webp" else "jpeg"
        while not session.cancel.is_set():
            tick = time.monotonic()
            if tick >= ends:
                return "the maximum duration was reached"
            if self._policy().mode == "off":
                return "live view was switched off by the PC's policy"
            for monitor in monitors:
                captured = now_us()
                try:
                    raw = await loop.run_in_executor(pool, grabber.grab, monitor)
                except CaptureError as exc:
                    return f"the screen cannot be captured: {exc}"
                picture = await loop.run_in_executor(
                    pool,
                    lambda raw=raw: encode(  # type: ignore[misc]
                        raw, scale=start.scale, format=fmt, quality=start.quality
                    ),
                )
                if len(picture.data) > MAX_LIVE_FRAME_BYTES:
                    continue  # a huge screen at full quality: skip rather than break
                seq += 1
                if start.record and self._record is not None:
                    last = recorded.get(monitor.index)
                    if last is None or tick - last >= RECORD_EVERY_SECONDS:
                        recorded[monitor.index] = tick
                        self._keep(picture, monitor, captured)
                await send(
                    LiveFrame(
                        session_id=start.session_id,
                        seq=seq,
                        capture_us=captured,
                        monitor=monitor.index + 1,
                        width=picture.width,
                        height=picture.height,
                        format=picture.format,
                        image=picture.data,
                    )
                )
            wait = period - (time.monotonic() - tick)
            if wait > 0:
                await asyncio.to_thread(session.cancel.wait, wait)
        return session.reason or "stopped"

    def _keep(self, picture: EncodedFrame, monitor: ScreenMonitor, captured_us: int) -> None:
        if self._record is None:
            return
        self._record(
            ScreenFrame(
                monitor=monitor.index,
                width=picture.width,
                height=picture.height,
                screen_width=monitor.width,
                screen_height=monitor.height,
                format=picture.format,
                image=picture.data,
                sha256=hashlib.sha256(picture.data).hexdigest(),
                trigger="live",
            ),
            captured_us,
        )


def _state(start: LiveStart, state: str, reason: str = "") -> LiveState:
    return LiveState(session_id=start.session_id, state=state, reason=reason[:500])  # type: ignore[arg-type]


async def _quiet_send(send: Send, message: Message) -> None:
    with contextlib.suppress(Exception):
        await send(message)
