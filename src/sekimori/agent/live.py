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

Remote control rides on these sessions. A verified, signed ``remote_control`` action
that the person allowed (``sekimori.agent.actions.remote``) calls ``grant_control``:
the orange "being controlled" bar appears (``indicator.ControlIndicator``) and, until
the grant ends, ``live_input`` for a live session *of the console user who requested
the command*, naming the command's nonce, is injected with XTEST
(``sekimori.agent.xinput``). The grant is bound to that user's live session running
when it is given (else to the first of that user's sessions input arrives through —
not merely the next one, which could be a device-list thumbnail); it ends after its
``max_seconds``, when that session ends, or when the person clicks the orange bar or
presses Pause. Then every key and button still pressed is released. Input at any
other time is dropped and counted (``dropped_input``; the first drop of a session and
the session's total go to the local journal). The agent reports ``live_control``
(``granted``/``ended``) on the session it is bound to.

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
from sekimori.protocol.live_input import InputEvent, PointerMove
from sekimori.protocol.messages import LiveControl, LiveInput, Message
from sekimori.protocol.policy import LiveViewPolicy

if TYPE_CHECKING:
    from sekimori.agent.actions.audit_log import ActionLog
    from sekimori.agent.indicator import ControlIndicator, Indicator
    from sekimori.agent.screens import EncodedFrame, ImageFormat, ScreenGrabber
    from sekimori.agent.screens import Monitor as ScreenMonitor
    from sekimori.agent.xinput import Injector, ScreenPoint

__all__ = ["ControlBusy", "LiveView", "control_journal", "display_settings"]

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]
# Keeps a recorded picture: (payload, capture time µs) -> into the outbox.
Record = Callable[[ScreenFrame, int], object]
# A recorded session keeps at most one picture per monitor this often.
RECORD_EVERY_SECONDS = 1.0
# Batches of input waiting for the injector thread; beyond this input is dropped
# (a viewer flooding the PC gets nothing queued for later).
MAX_QUEUED_INPUT = 32
# Writes an entry to the agent's local action log: (event, detail).
Journal = Callable[[str, dict[str, object]], None]


def control_journal(log: ActionLog) -> Journal:
    """Remote-control events into the PC's own action log (step ``control``)."""

    def write(event: str, detail: dict[str, object]) -> None:
        log.append(
            "control",
            nonce=str(detail.get("nonce", "")),
            action="remote_control",
            requested_by=str(detail.get("user", "")),
            reason=str(detail.get("reason", "")),
            extra={"event": event}
            | {k: v for k, v in detail.items() if k not in ("nonce", "user", "reason")},
        )

    return write


class ControlBusy(Exception):
    """Remote control is already granted to someone on this PC."""


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
    send: Send | None = None
    # The indicator is up and pictures flow (input may be injected from now on).
    started: bool = False
    # monitor number (1 = first) -> (its geometry, the size of its last picture)
    pictures: dict[int, tuple[ScreenMonitor, int, int]] = field(default_factory=dict)
    dropped_input: int = 0


@dataclass(eq=False)
class _Grant:
    """Remote control granted by a signed ``remote_control`` command."""

    nonce: str
    user: str
    until: float  # time.monotonic()
    until_us: int
    display: str
    xauthority: str
    pool: concurrent.futures.ThreadPoolExecutor
    session_id: str | None = None
    indicator: ControlIndicator | None = None
    injector: Injector | None = None
    timer: asyncio.TimerHandle | None = None
    ended: bool = False
    queued: int = 0
    injected: int = 0


class LiveView:
    """``policy()`` gives the live-view section of the policy in force;
    ``display``/``xauthority`` come from the agent's settings ("" = find it)."""

    def __init__(
        self,
        policy: Callable[[], LiveViewPolicy],
        display: str = "",
        xauthority: str = "",
        record: Record | None = None,
        journal: Journal | None = None,
    ) -> None:
        self._policy = policy
        self._record = record
        self.journal = journal
        self._display = display
        self._xauthority = xauthority
        self._session: _Session | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._grant: _Grant | None = None
        self.dropped_input = 0
        self.injected_input = 0

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
        await self.settle()  # a grant bound to it has released its keys

    async def _run(self, session: _Session, send: Send) -> None:
        start = session.start
        try:
            await self._session_body(session, send)
        except Exception as exc:  # noqa: BLE001 - any failure ends the session, reported
            log.warning("live view %s failed: %s", start.session_id, exc)
            await _quiet_send(send, _state(start, "stopped", f"error on the PC: {exc}"))
        finally:
            self._session_ended(session)
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
            session.send = send
            session.started = True
            reason = await self._stream(session, send, pool, grabber, limit)
            self._session_ended(session)
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
                session.pictures[monitor.index + 1] = (monitor, picture.width, picture.height)
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

    # ---- remote control ----------------------------------------------------------------

    def screen(self) -> tuple[str, str]:
        """The X display to show dialogs on and inject into, and its cookie file.
        Raises ``NoDisplay``, ``WaylandSession``, ``RemoteDisplay`` or ``OSError``."""
        target = find_display(display=self._display, xauthority=self._xauthority, env=os.environ)
        return target.display, target.xauthority or ""

    @property
    def view_allowed(self) -> bool:
        """Whether the policy in force allows live view at all (control rides on it)."""
        return self._policy().mode != "off"

    @property
    def consent_seconds(self) -> float:
        """How long the person is given to answer a consent dialog (the policy's)."""
        return float(self._policy().consent_timeout_seconds)

    @property
    def controller(self) -> str | None:
        """The console user remote control is granted to, if any."""
        grant = self._grant
        return None if grant is None or grant.ended else grant.user

    async def grant_control(self, nonce: str, user: str, seconds: float) -> int:
        """Grant remote control to ``user`` for ``seconds`` (the person has already
        allowed it): show the "being controlled" bar, get ready to inject, and bind
        the grant to ``user``'s running live session if any. Returns when it ends
        (µs, the agent's clock). Raises ``ControlBusy`` while another grant is
        active, the display errors (``NoDisplay`` ..., ``OSError``) and
        ``xinput.NoXTest``."""
        from sekimori.agent.indicator import ControlIndicator  # noqa: PLC0415
        from sekimori.agent.xinput import Injector  # noqa: PLC0415

        if self._grant is not None:
            raise ControlBusy(f"remote control is already granted to {self._grant.user}")
        display, xauthority = self.screen()
        loop = asyncio.get_running_loop()
        grant = _Grant(
            nonce=nonce,
            user=user,
            until=time.monotonic() + seconds,
            until_us=now_us() + int(seconds * 1_000_000),
            display=display,
            xauthority=xauthority,
            pool=concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="control"),
        )
        self._grant = grant

        def taken_back() -> None:  # from the bar's own thread
            loop.call_soon_threadsafe(self._end_control, grant, "the user took control back")

        try:
            grant.injector = await loop.run_in_executor(grant.pool, Injector, display, xauthority)
            grant.indicator = await loop.run_in_executor(
                grant.pool, ControlIndicator, display, xauthority, user, taken_back
            )
        except BaseException:
            self._grant = None
            if grant.injector is not None:
                await loop.run_in_executor(grant.pool, grant.injector.close)
            grant.pool.shutdown(wait=False)
            raise
        grant.timer = loop.call_later(
            seconds, self._end_control, grant, "the maximum duration was reached"
        )
        session = self._session
        if session is not None and session.started and session.start.viewer == user:
            self._bind(grant, session)
        log.info("remote control granted to %s for %.0f s (command %s)", user, seconds, nonce)
        self._note(
            "remote_control.granted",
            {"nonce": nonce, "user": user, "until_us": grant.until_us},
        )
        return grant.until_us

    async def end_control(self, reason: str) -> None:
        """End any grant now and wait until every key is released and the bar gone."""
        grant = self._grant
        if grant is not None:
            self._end_control(grant, reason)
        await self.settle()

    async def settle(self) -> None:
        """Wait for pending clean-ups and messages (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def input(self, message: LiveInput) -> None:
        """``live_input`` from the server: injected in order if a grant is active for
        this session and its viewer and names the granting command; else dropped."""
        grant = self._grant
        session = self._session
        refusal = self._input_refusal(message, grant, session)
        if refusal is not None or grant is None or session is None:
            self._drop(message, session, refusal or "no grant")
            return
        if grant.queued >= MAX_QUEUED_INPUT or grant.injector is None:
            self._drop(message, session, "too much input waiting")
            return
        batch: list[tuple[InputEvent, ScreenPoint | None]] = [
            (event, _point(session, event) if isinstance(event, PointerMove) else None)
            for event in message.events
        ]
        grant.queued += 1
        future = asyncio.get_running_loop().run_in_executor(grant.pool, grant.injector.apply, batch)
        future.add_done_callback(lambda done: self._injected(grant, done))

    def _input_refusal(
        self, message: LiveInput, grant: _Grant | None, session: _Session | None
    ) -> str | None:
        if grant is None or grant.ended:
            return "remote control is not granted"
        if time.monotonic() >= grant.until:
            return "the grant has expired"
        if grant.nonce != message.nonce:
            return "input names another command"
        if session is None or session.start.session_id != message.session_id:
            return "no such live-view session"
        if not session.started:
            return "the live-view session has not started"
        if session.start.viewer != grant.user:
            return "the viewer is not the user control was granted to"
        if grant.session_id is None:
            self._bind(grant, session)  # the first input of that user's session
        elif grant.session_id != session.start.session_id:
            return "the grant is bound to another session"
        return None

    def _injected(self, grant: _Grant, done: asyncio.Future[int]) -> None:
        grant.queued -= 1
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            log.warning("remote control: injection failed: %s", error)
            self._end_control(grant, f"input cannot be injected: {error}")
            return
        grant.injected += done.result()
        self.injected_input += done.result()

    def _drop(self, message: LiveInput, session: _Session | None, reason: str) -> None:
        count = len(message.events)
        self.dropped_input += count
        if session is not None and session.start.session_id == message.session_id:
            first = session.dropped_input == 0
            session.dropped_input += count
            if not first:
                return
        log.warning("live input for session %s dropped: %s", message.session_id, reason)
        self._note(
            "remote_control.input_dropped",
            {"session": message.session_id, "nonce": message.nonce, "reason": reason},
        )

    def _bind(self, grant: _Grant, session: _Session) -> None:
        grant.session_id = session.start.session_id
        log.info("remote control of %s bound to live session %s", grant.user, grant.session_id)
        self._tell(
            session,
            LiveControl(
                session_id=session.start.session_id, state="granted", until_us=grant.until_us
            ),
        )

    def _session_ended(self, session: _Session) -> None:
        grant = self._grant
        if grant is not None and grant.session_id == session.start.session_id:
            self._end_control(grant, "the live-view session ended")
        if session.dropped_input:
            self._note(
                "remote_control.input_dropped_total",
                {"session": session.start.session_id, "events": session.dropped_input},
            )
            session.dropped_input = 0

    def _end_control(self, grant: _Grant, reason: str) -> None:
        """End ``grant`` (idempotent): nothing more is injected from now on; keys and
        buttons are released and the bar removed in the grant's thread."""
        if grant.ended:
            return
        grant.ended = True
        if self._grant is grant:
            self._grant = None
        if grant.timer is not None:
            grant.timer.cancel()
        log.info("remote control of %s ended: %s", grant.user, reason)
        self._note(
            "remote_control.ended",
            {"nonce": grant.nonce, "user": grant.user, "reason": reason, "events": grant.injected},
        )
        session = self._session
        if session is not None and session.start.session_id == grant.session_id:
            self._tell(
                session,
                LiveControl(session_id=session.start.session_id, state="ended", reason=reason),
            )
        task = asyncio.get_running_loop().create_task(self._release(grant))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    @staticmethod
    async def _release(grant: _Grant) -> None:
        loop = asyncio.get_running_loop()
        try:
            if grant.injector is not None:
                await loop.run_in_executor(grant.pool, grant.injector.close)
            if grant.indicator is not None:
                await loop.run_in_executor(grant.pool, grant.indicator.close)
        except Exception as exc:  # noqa: BLE001 - the display went away: nothing to undo
            log.info("remote control clean-up: %s", exc)
        finally:
            grant.pool.shutdown(wait=False)

    def _tell(self, session: _Session, message: Message) -> None:
        if session.send is None:
            return
        task = asyncio.get_running_loop().create_task(_quiet_send(session.send, message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _note(self, event: str, detail: dict[str, object]) -> None:
        if self.journal is None:
            return
        try:
            self.journal(event, detail)
        except Exception as exc:  # noqa: BLE001 - the log must not stop remote control
            log.warning("local action log: %s", exc)


def _point(session: _Session, event: PointerMove) -> ScreenPoint | None:
    """A point of the viewer's picture of a monitor, on the screen (None: no picture
    of that monitor was sent, so the viewer cannot be pointing at it)."""
    found = session.pictures.get(event.monitor)
    if found is None:
        return None
    monitor, width, height = found
    x = monitor.x + min(monitor.width - 1, event.x * monitor.width // width)
    y = monitor.y + min(monitor.height - 1, event.y * monitor.height // height)
    return x, y


def _state(start: LiveStart, state: str, reason: str = "") -> LiveState:
    return LiveState(session_id=start.session_id, state=state, reason=reason[:500])  # type: ignore[arg-type]


async def _quiet_send(send: Send, message: Message) -> None:
    with contextlib.suppress(Exception):
        await send(message)
