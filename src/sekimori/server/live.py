"""Live-view sessions on the server: a console viewer on one side, a connected agent
on the other, this registry in between.

The console's WebSocket endpoint opens a session (``LiveSessions.open``): the server
sends ``live_start`` over the device's existing channel (only to an agent that listed
the ``live`` capability) and the viewer then reads what the agent answers from the
session's queue — ``live_state`` and ``live_frame`` messages, relayed as they come.
The queue is small and keeps the newest pictures: a viewer on a slow link sees fewer
frames, never older ones, and the server never holds more than a few pictures per
session. ``close`` sends ``live_stop``; a device that disconnects ends its sessions.

An agent can only feed sessions opened for itself: a frame naming another device's
session (or one that has ended) is dropped.

Remote control rides on a session: ``send_input`` forwards the viewer's keyboard and
mouse events (``live_input``, only to an agent that listed ``remote_control``), naming
the signed ``remote_control`` command that granted control; the agent injects them
only while its own grant for that command, user and session lasts. The agent's
``live_control`` (granted / ended) is queued for the viewer like a state.

Sessions live in the memory of the server process the device is connected to (the
console and the channel run in the same process). Auditing (who watched whom, when,
for how long) is the console's part: see ``console/routes/live.py``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from sekimori.clock import now_us
from sekimori.protocol import LiveFrame, LiveStart, LiveState, LiveStop
from sekimori.protocol.live_input import InputEvent
from sekimori.protocol.messages import LiveControl, LiveInput, Message

__all__ = ["LiveSession", "LiveSessions", "LiveUnavailable"]

log = logging.getLogger(__name__)

# Pictures waiting for a viewer: beyond this the oldest is dropped.
QUEUE_FRAMES = 4
# Sessions at once per server process (each costs an agent's upload and a viewer).
MAX_SESSIONS = 64

Sender = Callable[[str, Message], Awaitable[None]]
Capable = Callable[[str], bool | None]
Update = LiveState | LiveFrame | LiveControl


class LiveUnavailable(Exception):
    """The device cannot be watched now: not connected, too old, or too many sessions."""


@dataclass(eq=False)
class LiveSession:
    id: str
    device_id: str
    viewer: str
    opened_us: int
    frames: int = 0
    dropped: int = 0
    bytes: int = 0
    started_us: int | None = None
    ended: bool = False
    # Remote control as the agent reported it: "" (never), "granted", "ended".
    control: str = ""
    input_events: int = 0
    _pending: deque[Update] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def next(self) -> Update:
        """The next message from the agent, oldest first (waits for one)."""
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()
        return self._pending.popleft()

    def put(self, message: Update) -> None:
        if isinstance(message, LiveFrame):
            waiting = [m for m in self._pending if isinstance(m, LiveFrame)]
            if len(waiting) >= QUEUE_FRAMES:
                self._pending.remove(waiting[0])
                self.dropped += 1
        self._pending.append(message)  # states: at most three per session, controls few
        self._wake.set()


class LiveSessions:
    """``send(device_id, message)`` sends on a device's channel (LookupError when it
    is not connected); ``capable(device_id)`` tells whether it speaks live view
    (None: not connected)."""

    def __init__(
        self, send: Sender, capable: Capable, control_capable: Capable | None = None
    ) -> None:
        self._send = send
        self._capable = capable
        self._control_capable = control_capable or (lambda _device: False)
        self._sessions: dict[str, LiveSession] = {}

    @property
    def active(self) -> list[LiveSession]:
        return list(self._sessions.values())

    async def open(
        self,
        device_id: str,
        viewer: str,
        *,
        max_fps: float = 4.0,
        scale: float = 0.5,
        quality: int = 60,
        monitor: int = 0,
        consent_required: bool = False,
        max_seconds: int = 3600,
        record: bool = False,
    ) -> LiveSession:
        capable = self._capable(device_id)
        if capable is None:
            raise LiveUnavailable("the PC is not connected")
        if not capable:
            raise LiveUnavailable("the PC's agent is too old for live view")
        if len(self._sessions) >= MAX_SESSIONS:
            raise LiveUnavailable("too many live-view sessions on this server")
        session = LiveSession(
            id=secrets.token_hex(16), device_id=device_id, viewer=viewer, opened_us=now_us()
        )
        self._sessions[session.id] = session
        try:
            await self._send(
                device_id,
                LiveStart(
                    session_id=session.id,
                    viewer=viewer[:128] or "?",
                    max_fps=max_fps,
                    scale=scale,
                    quality=quality,
                    monitor=monitor,
                    consent_required=consent_required,
                    max_seconds=max_seconds,
                    record=record,
                ),
            )
        except (LookupError, ConnectionClosed, OSError):
            self._sessions.pop(session.id, None)
            raise LiveUnavailable("the PC is not connected") from None
        log.info("live view %s of device %s for %s opened", session.id, device_id, viewer)
        return session

    async def close(self, session: LiveSession, reason: str = "") -> None:
        """End a session from the viewer's side (stop the agent if it still runs)."""
        if self._sessions.pop(session.id, None) is None:
            return
        if not session.ended:
            session.ended = True
            try:
                await self._send(
                    session.device_id, LiveStop(session_id=session.id, reason=reason[:500])
                )
            except (LookupError, ConnectionClosed, OSError) as exc:  # gone: nothing to stop
                log.info("live view %s: stop not sent: %s", session.id, exc)
        log.info(
            "live view %s closed: %d frames, %d dropped",
            session.id,
            session.frames,
            session.dropped,
        )

    async def send_input(self, session: LiveSession, nonce: str, events: list[InputEvent]) -> None:
        """Forward a viewer's input to the PC (the console has checked the user may
        control it). Raises ``LiveUnavailable`` when the session is over or the
        agent does not speak remote control."""
        if session.ended or self._sessions.get(session.id) is not session:
            raise LiveUnavailable("the live-view session has ended")
        if not self._control_capable(session.device_id):
            raise LiveUnavailable("the PC's agent is too old for remote control")
        try:
            await self._send(
                session.device_id, LiveInput(session_id=session.id, nonce=nonce, events=events)
            )
        except (LookupError, ConnectionClosed, OSError):
            raise LiveUnavailable("the PC is not connected") from None
        session.input_events += len(events)

    def deliver(self, device_id: str, message: Update) -> None:
        """A message from a device's agent (called by the channel)."""
        session = self._sessions.get(message.session_id)
        if session is None or session.device_id != device_id or session.ended:
            return
        if isinstance(message, LiveControl):
            session.control = message.state
        elif isinstance(message, LiveFrame):
            session.frames += 1
            session.bytes += len(message.image)
        elif message.state == "started":
            session.started_us = now_us()
        elif message.state in ("refused", "stopped"):
            session.ended = True
        session.put(message)

    def device_gone(self, device_id: str) -> None:
        """The device disconnected: its sessions end."""
        for session in list(self._sessions.values()):
            if session.device_id == device_id and not session.ended:
                session.ended = True
                session.put(
                    LiveState(session_id=session.id, state="stopped", reason="the PC disconnected")
                )
