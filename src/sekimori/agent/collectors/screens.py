"""The screens collector: pictures of what is on the PC's screens (issue 6).

The most sensitive thing the agent can record, so it is off unless the device group's
policy turns it on (``enabled`` defaults to False here and in the policy).

What it reports: ``screen.frame`` events (see ``sekimori.protocol.events.screen``), one
per monitor whose picture changed, each with the focused window's title, application
and user, on these triggers:

* ``window_change``: the active window or its title changed (X events, no polling);
  the frame is taken a moment later (``_WINDOW_SETTLE_SECONDS``) so the new window has
  painted, and at most once per ``_WINDOW_MIN_GAP_SECONDS``;
* ``interval``: every ``interval_seconds`` (0: never);
* ``rule``: ``request_burst()`` (the agent calls it when the server says a rule fired):
  the last ``burst_frames`` changed frames kept in memory from before the call (the
  screen is sampled every ``_SAMPLE_SECONDS`` for that while ``burst_frames`` > 0; those
  frames are kept, not sent), then ``burst_frames`` more, one a second.

Every monitor is captured; a frame that does not differ from the last one *sent* for
its monitor (``ChangeDetector``, ``change_threshold`` gray levels) is skipped. Frames
are downscaled by ``scale`` and encoded as ``format`` at ``quality``; the defaults
(JPEG, half size, quality 60) are chosen by ``sekimori bench screens`` (see
``docs/benchmarks.md``).

Privacy: nothing is captured while a window of an application in
``exclude_applications`` (WM_CLASS instance or class, case-insensitive) has the focus.
A daily byte budget (``max_bytes_per_day``, local days) bounds what one PC can send:
once reached, capture stops until local midnight and an ``agent.log`` warning says so.
The bytes sent today are saved in the collector's cursor with every frame, so a
restart does not reset the budget.

No X display, Wayland: as the window collector (see ``platform.linux.display``).
"""

from __future__ import annotations

import collections
import hashlib
import pwd
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import msgspec

from sekimori.agent.collectors._display import collector_display
from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings, Sink
from sekimori.agent.outbox import PendingEvent
from sekimori.agent.platform.linux.display import (
    X11_SOCKET_DIR,
    DisplayTarget,
)
from sekimori.agent.platform.linux.x11 import X11Connection, X11Error, client_process
from sekimori.agent.screens import (
    CaptureError,
    ChangeDetector,
    EncodedFrame,
    Monitor,
    RawFrame,
    ScreenGrabber,
    encode,
)
from sekimori.clock import now_us
from sekimori.protocol.events.agent import AgentLog
from sekimori.protocol.events.screen import MAX_FRAME_BYTES, ScreenFrame

__all__ = ["ScreensCollector", "ScreensSettings"]

_STOP_POLL_SECONDS = 0.5
_WINDOW_SETTLE_SECONDS = 0.3
_WINDOW_MIN_GAP_SECONDS = 1.0
_SAMPLE_SECONDS = 2.0
_BURST_GAP_SECONDS = 1.0
_MAX_TITLE = 1000
_NEVER = float("inf")

Trigger = Literal["window_change", "interval", "rule"]


class ScreensSettings(CollectorSettings, kw_only=True):
    enabled: bool = False
    """Off unless the policy (or the agent's own configuration) turns it on."""
    interval_seconds: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    """A frame every this many seconds (skipped when unchanged); 0: no interval."""
    on_window_change: bool = True
    """A frame when the active window or its title changes."""
    max_bytes_per_day: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024 * 1024
    """Encoded bytes sent per local day; capture stops when reached."""
    scale: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.4
    format: Literal["jpeg", "webp"] = "jpeg"
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] = 60
    burst_frames: Annotated[int, msgspec.Meta(ge=0, le=60)] = 5
    """Frames kept from before a burst request, and frames taken after it."""
    change_threshold: Annotated[float, msgspec.Meta(ge=0, le=255)] = 1.0
    """Mean difference (gray levels) below which a frame counts as unchanged."""
    exclude_applications: list[str] = msgspec.field(default_factory=list)
    """WM_CLASS instance or class names whose windows are never captured."""
    display: str = ""
    """X display (``":0"``, local only); empty: as the window collector finds it."""
    xauthority: str = ""
    """Cookie file for that display; empty: ``$XAUTHORITY`` or the session's own."""


class _Budget(msgspec.Struct, forbid_unknown_fields=True):
    day: str  # local date, ISO
    bytes: int
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class _Focus:
    title: str | None
    application: str | None
    user: str | None
    excluded: bool


@dataclass(frozen=True, slots=True)
class _Kept:
    """A changed frame sampled before any burst request, held in memory."""

    time_us: int
    payload: ScreenFrame
    os_user: str | None


def _user_name(uid: int | None) -> str:
    if uid is None:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _today() -> str:
    """The local date (the budget's day ends at local midnight)."""
    return datetime.now().astimezone().date().isoformat()


class ScreensCollector(Collector):
    name: ClassVar[str] = "screens"
    settings_type: ClassVar[type[CollectorSettings]] = ScreensSettings
    settings: ScreensSettings
    socket_dir: ClassVar[Path] = X11_SOCKET_DIR
    proc_dir: ClassVar[Path] = Path("/proc")

    def __init__(self, settings: CollectorSettings, sink: Sink) -> None:
        if not isinstance(settings, ScreensSettings):
            raise TypeError(f"expected ScreensSettings, got {type(settings).__name__}")
        super().__init__(settings, sink)
        self._excluded = {name.casefold() for name in settings.exclude_applications}
        self._sent = ChangeDetector(settings.change_threshold)
        self._sampled = ChangeDetector(settings.change_threshold)
        self._kept: collections.deque[_Kept] = collections.deque(maxlen=settings.burst_frames)
        self._burst_requested = threading.Event()
        self._burst_left = 0
        self._budget = _Budget(day=_today(), bytes=0)
        self._exhausted_day = ""
        self._session_user = ""
        self.watching = threading.Event()
        """Set once the display is being watched."""
        self.frames_sent = 0
        """Frames emitted since start (for tests and benches)."""

    # -- the agent's side ------------------------------------------------------------
    def request_burst(self) -> None:
        """A rule fired: send the frames kept from just before, and a few more. Safe
        to call from any thread; acted on within half a second."""
        self._burst_requested.set()

    # -- lifecycle ---------------------------------------------------------------------
    def _target(self) -> DisplayTarget:
        return collector_display(
            display=self.settings.display,
            xauthority=self.settings.xauthority,
            sink=self.sink,
            socket_dir=self.socket_dir,
            proc=self.proc_dir,
        )

    def run(self, stop: threading.Event) -> None:
        self._load_budget()
        target = self._target()
        self._session_user = _user_name(target.uid)
        try:
            conn = X11Connection(target.display, target.xauthority)
        except X11Error as exc:
            raise CollectorError(str(exc)) from None
        with conn:
            try:
                grabber = ScreenGrabber(target.display, target.xauthority)
            except CaptureError as exc:
                raise CollectorError(str(exc)) from None
            with grabber:
                try:
                    self._loop(stop, conn, grabber)
                except (X11Error, CaptureError) as exc:
                    raise CollectorError(str(exc)) from None

    def _loop(self, stop: threading.Event, conn: X11Connection, grabber: ScreenGrabber) -> None:
        conf = self.settings
        window = conn.active_window()
        conn.watch(window)
        mono = time.monotonic()
        interval_due = mono + conf.interval_seconds if conf.interval_seconds > 0 else _NEVER
        sample_due = mono if conf.burst_frames > 0 else _NEVER
        window_due = mono + _WINDOW_SETTLE_SECONDS if conf.on_window_change else _NEVER
        burst_due = _NEVER
        last_window_capture = -_NEVER
        self.watching.set()
        while not stop.is_set():
            deadline = min(interval_due, sample_due, window_due, burst_due)
            changes = conn.wait(min(_STOP_POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))
            mono = time.monotonic()
            if "active" in changes:
                conn.watch(conn.active_window())
            if changes and conf.on_window_change and window_due == _NEVER:
                window_due = max(
                    mono + _WINDOW_SETTLE_SECONDS, last_window_capture + _WINDOW_MIN_GAP_SECONDS
                )
            if self._burst_requested.is_set():
                self._burst_requested.clear()
                self._send_kept()
                self._burst_left = conf.burst_frames
                burst_due = mono
            if mono >= window_due:
                window_due = _NEVER
                last_window_capture = mono
                self._capture(grabber, conn, "window_change")
            if mono >= burst_due:
                self._capture(grabber, conn, "rule")
                self._burst_left -= 1
                burst_due = mono + _BURST_GAP_SECONDS if self._burst_left > 0 else _NEVER
            if mono >= interval_due:
                interval_due = mono + conf.interval_seconds
                self._capture(grabber, conn, "interval")
            if mono >= sample_due:
                sample_due = mono + _SAMPLE_SECONDS
                self._capture(grabber, conn, None)

    # -- capture -------------------------------------------------------------------------
    def _focus(self, conn: X11Connection) -> _Focus:
        window = conn.active_window()
        props = conn.window_props(window) if window else None
        if props is None:
            return _Focus(title=None, application=None, user=None, excluded=False)
        proc = client_process(props.pid, self.proc_dir) if props.pid else None
        excluded = bool({props.instance.casefold(), props.wm_class.casefold()} & self._excluded)
        return _Focus(
            title=props.title[:_MAX_TITLE] or None,
            application=props.wm_class or props.instance or None,
            user=(_user_name(proc.uid) if proc else "") or None,
            excluded=excluded,
        )

    def _capture(
        self, grabber: ScreenGrabber, conn: X11Connection, trigger: Trigger | None
    ) -> None:
        """Capture every monitor; send (``trigger``) or keep for a burst (None)."""
        if self._over_budget():
            return
        focus = self._focus(conn)
        if focus.excluded:
            return
        detector = self._sent if trigger is not None else self._sampled
        events: list[PendingEvent] = []
        for monitor in grabber.monitors():
            raw = grabber.grab(monitor)
            if not detector.changed(monitor.index, raw):
                continue
            payload = self._frame(raw, monitor, focus, trigger or "rule")
            os_user = focus.user or self._session_user or None
            if trigger is None:
                self._kept.append(_Kept(now_us(), payload, os_user))
            else:
                events.append(PendingEvent("screen.frame", payload, os_user, now_us()))
        self._emit(events)

    def _frame(
        self, raw: RawFrame, monitor: Monitor, focus: _Focus, trigger: Trigger
    ) -> ScreenFrame:
        conf = self.settings
        encoded = _encode_within(raw, conf.scale, conf.format, conf.quality)
        return ScreenFrame(
            monitor=monitor.index,
            width=encoded.width,
            height=encoded.height,
            screen_width=monitor.width,
            screen_height=monitor.height,
            format=encoded.format,
            image=encoded.data,
            sha256=hashlib.sha256(encoded.data).hexdigest(),
            trigger=trigger,
            title=focus.title,
            application=focus.application,
            user=focus.user,
        )

    def _send_kept(self) -> None:
        kept = list(self._kept)
        self._kept.clear()
        if kept and not self._over_budget():
            self._emit(
                [PendingEvent("screen.frame", k.payload, k.os_user, k.time_us) for k in kept]
            )

    # -- budget and output -------------------------------------------------------------------
    def _over_budget(self) -> bool:
        today = _today()
        if self._budget.day != today:
            self._budget = _Budget(day=today, bytes=0)
        return self._exhausted_day == today

    def _emit(self, events: list[PendingEvent]) -> None:
        if not events:
            return
        limit = self.settings.max_bytes_per_day
        allowed: list[PendingEvent] = []
        used = self._budget.bytes
        for event in events:
            assert isinstance(event.payload, ScreenFrame)  # noqa: S101 - built above
            size = len(event.payload.image)
            if used + size > limit:
                self._exhausted_day = self._budget.day
                break
            used += size
            allowed.append(event)
        exhausted = self._exhausted_day == self._budget.day
        self._budget = _Budget(day=self._budget.day, bytes=used, exhausted=exhausted)
        if exhausted:
            message = (
                f"daily screen budget of {limit} bytes reached ({used} bytes sent on "
                f"{self._budget.day}): no more frames until local midnight"
            )
            allowed.append(
                PendingEvent(
                    "agent.log",
                    AgentLog(level="warning", source="collector.screens", message=message),
                    None,
                    now_us(),
                )
            )
        self.sink.emit_many(allowed, cursor=msgspec.msgpack.encode(self._budget))
        self.frames_sent += sum(1 for e in allowed if e.kind == "screen.frame")

    def _load_budget(self) -> None:
        raw = self.sink.cursor()
        today = _today()
        if raw is None:
            return
        try:
            saved = msgspec.msgpack.decode(raw, type=_Budget)
        except msgspec.DecodeError:
            return
        if saved.day == today:
            self._budget = saved
            if saved.exhausted or saved.bytes >= self.settings.max_bytes_per_day:
                self._exhausted_day = today


def _encode_within(
    raw: RawFrame, scale: float, fmt: Literal["jpeg", "webp"], quality: int
) -> EncodedFrame:
    """Encode; lower the quality, then the scale, until the frame fits the event."""
    while True:
        encoded = encode(raw, scale=scale, format=fmt, quality=quality)
        if len(encoded.data) <= MAX_FRAME_BYTES:
            return encoded
        if quality > 20:
            quality //= 2
        else:
            scale /= 2
