"""The window collector: the focused application, its title, and idle/active time.

What it reports (see ``sekimori.protocol.events.window`` for the span model that makes
"time per application" a single sum): a ``window.focus`` event whenever the active
window or its title changes, carrying the new window and the span that just ended;
``window.idle`` when keyboard and mouse have been untouched for the idle threshold;
``window.active`` when input resumes.

How: on X11, through ``platform.linux.x11``. Focus and title changes are X events
(no polling). Input idle time is polled, but only as often as it can matter: while
the user is active, the next check is due when the threshold could first be reached
(idle threshold minus the idle time just read); while idle, every
``interval_seconds`` so the moment input resumed is known to that precision.

Cursor: the open span (display, window, title, pid, start) and idle state are saved
with every event. After a crash, a restart that finds the same window with the same
title focused continues the span silently instead of repeating it; a clean stop
ends the span with a ``cause="stop"`` event.

Privacy: ``record_titles=False`` withholds every title; ``exclude_applications``
withholds the titles of the listed applications (WM_CLASS instance or class,
case-insensitive). A withheld title's changes produce no events.

Wayland: refused permanently (titles are unavailable there). No X display: permanent
on a PC where the collector never watched one; retried where it did (the session
ended; the next logon brings a display back). See ``platform.linux.display`` for how
the display is chosen when the agent runs as root.
"""

from __future__ import annotations

import pwd
import threading
import time
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
from sekimori.clock import now_us
from sekimori.protocol.events._base import Payload
from sekimori.protocol.events.window import (
    FocusSpan,
    WindowActive,
    WindowFocus,
    WindowIdle,
    WindowInfo,
)

__all__ = ["WindowCollector", "WindowSettings"]

_MAX_TITLE = 1000
# The loop wakes at least this often to look at the stop flag (base contract).
_STOP_POLL_SECONDS = 0.5
# How long "no active window" must last to be reported (see _on_active).
_BLANK_SETTLE_SECONDS = 0.3
_NEVER = float("inf")
# How long after a title change the title is read (see _step).
_TITLE_SETTLE_SECONDS = 0.1
# Two readings of the idle counter that put the last input this close together (µs)
# describe the same idle period.
_SAME_IDLE_US = 2_000_000


class WindowSettings(CollectorSettings, kw_only=True):
    interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """While the user is idle: how often to check whether input resumed."""
    display: str = ""
    """X display to watch (``":0"``, local only); empty: ``$DISPLAY``, else discover the
    session's."""
    xauthority: str = ""
    """Cookie file for that display; empty: ``$XAUTHORITY`` or the session's own."""
    record_titles: bool = True
    exclude_applications: list[str] = msgspec.field(default_factory=list)
    """WM_CLASS instance or class names whose titles are never recorded."""
    idle_minutes: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    idle_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Overrides ``idle_minutes`` when set (finer policies, tests)."""
    title_min_interval_seconds: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    """At most one title event per this interval: a title that changes faster (a
    progress counter, a clock) is coalesced and the latest title reported."""


class _Cursor(msgspec.Struct, forbid_unknown_fields=True):
    display: str
    window: int
    title: str
    pid: int | None
    span_start_us: int | None
    idle_since_us: int | None


def _user_name(uid: int | None) -> str:
    if uid is None:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class WindowCollector(Collector):
    name: ClassVar[str] = "window"
    settings_type: ClassVar[type[CollectorSettings]] = WindowSettings
    settings: WindowSettings
    # Where discovery looks; class attributes so tests can point them at a fixture.
    socket_dir: ClassVar[Path] = X11_SOCKET_DIR
    proc_dir: ClassVar[Path] = Path("/proc")

    def __init__(self, settings: CollectorSettings, sink: Sink) -> None:
        if not isinstance(settings, WindowSettings):
            raise TypeError(f"expected WindowSettings, got {type(settings).__name__}")
        super().__init__(settings, sink)
        conf = settings
        self._threshold_ms = int((conf.idle_seconds or conf.idle_minutes * 60) * 1000)
        self._excluded = {name.casefold() for name in conf.exclude_applications}
        self._display = ""
        self._session_user = ""
        self._current: WindowInfo | None = None  # focused now (policy applied)
        self._span_start: int | None = None  # open span's start, None while idle/none
        self._idle_since: int | None = None
        self._last_title_event = -float("inf")  # monotonic
        self._title_due: float | None = None
        self._blank_due: float | None = None  # see _on_active
        self._blank_since = 0
        self._idle_due = 0.0
        self.watching = threading.Event()
        """Set once the display is being watched (the first state is known)."""

    # -- lifecycle ----------------------------------------------------------------
    def _target(self) -> DisplayTarget:
        return collector_display(
            display=self.settings.display,
            xauthority=self.settings.xauthority,
            sink=self.sink,
            socket_dir=self.socket_dir,
            proc=self.proc_dir,
        )

    def run(self, stop: threading.Event) -> None:
        target = self._target()
        try:
            conn = X11Connection(target.display, target.xauthority)
        except X11Error as exc:
            # Not permanent: the session may not have started yet, or may come back.
            raise CollectorError(str(exc)) from None
        self._display = target.display
        self._session_user = _user_name(target.uid)
        with conn:
            try:
                self._begin(conn)
                self.watching.set()
                while not stop.is_set():
                    self._step(conn)
            except X11Error as exc:
                # The X server went away (logout): the span ended about now.
                self._stop_watching()
                raise CollectorError(str(exc)) from None
            self._stop_watching()

    def _stop_watching(self) -> None:
        if self._current is not None or self._span_start is not None:
            self._change(None, "stop", now_us())

    def _step(self, conn: X11Connection) -> None:
        mono = time.monotonic()
        deadline = min(self._idle_due, self._title_due or _NEVER, self._blank_due or _NEVER)
        changes = conn.wait(min(_STOP_POLL_SECONDS, max(deadline - mono, 0.0)))
        mono = time.monotonic()
        if "active" in changes or (self._blank_due is not None and mono >= self._blank_due):
            self._on_active(conn, mono)
        elif "title" in changes and self._title_due is None:
            # Read the title a moment later: programs set WM_NAME and _NET_WM_NAME one
            # after the other, and fast-changing titles are coalesced.
            self._title_due = max(
                mono + _TITLE_SETTLE_SECONDS,
                self._last_title_event + self.settings.title_min_interval_seconds,
            )
        if self._title_due is not None and mono >= self._title_due:
            self._title_due = None
            self._read_title(conn, mono)
        if mono >= self._idle_due:
            self._check_idle(conn, mono)

    def _begin(self, conn: X11Connection) -> None:
        now = now_us()
        window = conn.active_window()
        conn.watch(window)
        info = self._info(conn, window)
        self._current = info
        saved = self._load_cursor()
        if saved is not None and saved.display == self._display:
            self._idle_since = saved.idle_since_us
            idle_ms = conn.idle_ms()
            if (
                self._idle_since is not None
                and idle_ms is not None
                and idle_ms >= self._threshold_ms
                and abs(now - idle_ms * 1000 - self._idle_since) > _SAME_IDLE_US
            ):
                # Idle again, but not since the saved moment: the user came back while
                # the agent was down. That return is unknown; the new idleness is not.
                self._idle_since = None
            key = (info.window, info.title, info.pid) if info else (0, "", None)
            if key == (saved.window, saved.title, saved.pid):
                # Still what was reported before the restart: its span goes on.
                self._span_start = saved.span_start_us
                return
        self._span_start = now if info is not None and self._idle_since is None else None
        self._emit("window.focus", WindowFocus(cause="start", window=info, previous=None), now)

    # -- focus and titles -----------------------------------------------------------
    def _info(self, conn: X11Connection, window: int | None) -> WindowInfo | None:
        props = conn.window_props(window) if window else None
        if props is None:
            return None
        proc = client_process(props.pid, self.proc_dir) if props.pid else None
        hidden = not self.settings.record_titles or bool(
            {props.instance.casefold(), props.wm_class.casefold()} & self._excluded
        )
        return WindowInfo(
            window=props.window,
            title="" if hidden else props.title[:_MAX_TITLE],
            title_hidden=hidden,
            application=props.wm_class,
            instance=props.instance,
            pid=props.pid,
            exe=proc.exe if proc else "",
            user=_user_name(proc.uid) if proc else "",
        )

    def _on_active(self, conn: X11Connection, mono: float) -> None:
        window = conn.active_window()
        conn.watch(window)
        info = self._info(conn, window)
        now = now_us()
        if info is None and self._current is not None:
            # Window managers (openbox) clear _NET_ACTIVE_WINDOW for a moment while
            # switching; "no window has focus" is only true if it lasts.
            if self._blank_due is None:
                self._blank_since, self._blank_due = now, mono + _BLANK_SETTLE_SECONDS
                return
            if mono < self._blank_due:
                return
            now = self._blank_since
        self._blank_due = None
        if info != self._current:
            same_window = (
                info is not None
                and self._current is not None
                and (info.window == self._current.window)
            )
            self._change(info, "title" if same_window else "focus", now)
            self._last_title_event = mono

    def _read_title(self, conn: X11Connection, mono: float) -> None:
        current = self._current
        if current is None or current.title_hidden:
            return
        title = conn.title(current.window)
        if title is None:  # the window is gone; the active-window change follows
            return
        title = title[:_MAX_TITLE]
        if title != current.title:
            self._change(msgspec.structs.replace(current, title=title), "title", now_us())
            self._last_title_event = mono

    def _change(
        self, info: WindowInfo | None, cause: Literal["focus", "title", "stop"], now: int
    ) -> None:
        """``info`` is focused from ``now``: end the open span and report both."""
        previous = None
        if self._current is not None and self._span_start is not None:
            start = min(self._span_start, now)
            previous = FocusSpan(window=self._current, start_us=start, duration_us=now - start)
        self._current = info
        self._span_start = now if info is not None and self._idle_since is None else None
        self._emit("window.focus", WindowFocus(cause=cause, window=info, previous=previous), now)

    # -- idle -----------------------------------------------------------------------
    def _check_idle(self, conn: X11Connection, mono: float) -> None:
        idle_ms = conn.idle_ms()
        if idle_ms is None:  # no MIT-SCREEN-SAVER: idle time cannot be known
            self._idle_due = float("inf")
            return
        now = now_us()
        last_input = now - idle_ms * 1000
        poll = min(self.settings.interval_seconds, self._threshold_ms / 2000)
        if self._idle_since is None:
            if idle_ms < self._threshold_ms:
                self._idle_due = mono + (self._threshold_ms - idle_ms) / 1000
                return
            self._go_idle(last_input)
        elif idle_ms < self._threshold_ms:
            # Input came since the last check (checks are closer than the threshold).
            self._resume(last_input)
        self._idle_due = mono + poll

    def _go_idle(self, last_input: int) -> None:
        previous = None
        at = last_input
        if self._current is not None and self._span_start is not None:
            at = max(last_input, self._span_start)
            previous = FocusSpan(
                window=self._current, start_us=self._span_start, duration_us=at - self._span_start
            )
        self._idle_since = last_input
        self._span_start = None
        payload = WindowIdle(
            idle_since_us=last_input, threshold_ms=self._threshold_ms, previous=previous
        )
        self._emit("window.idle", payload, at)

    def _resume(self, at: int) -> None:
        since = self._idle_since if self._idle_since is not None else at
        at = max(at, since)
        self._idle_since = None
        self._span_start = at if self._current is not None else None
        payload = WindowActive(
            idle_since_us=since, idle_duration_us=at - since, window=self._current
        )
        self._emit("window.active", payload, at)

    # -- output -----------------------------------------------------------------------
    def _emit(self, kind: str, payload: Payload, time_us: int) -> None:
        current = self._current
        cursor = _Cursor(
            display=self._display,
            window=current.window if current else 0,
            title=current.title if current else "",
            pid=current.pid if current else None,
            span_start_us=self._span_start,
            idle_since_us=self._idle_since,
        )
        os_user = (current.user if current else "") or self._session_user or None
        self.sink.emit_many(
            [PendingEvent(kind, payload, os_user, time_us)],
            cursor=msgspec.msgpack.encode(cursor),
        )

    def _load_cursor(self) -> _Cursor | None:
        raw = self.sink.cursor()
        if raw is None:
            return None
        try:
            return msgspec.msgpack.decode(raw, type=_Cursor)
        except msgspec.DecodeError:  # written by an incompatible version: start afresh
            return None
