"""Events of the window collector: which application has the user's attention.

The collector cuts the user's time into *focus spans*: one window, with one title,
focused while the user is active. A span ends when focus moves, the title changes,
input stops for longer than the idle threshold, or the agent stops. Every event that
ends a span carries it as ``previous`` (window, start, duration), and

    previous.start_us + previous.duration_us == the event's time_us

so "time per application" is one sum over ``window.focus`` and ``window.idle`` events
grouped by ``previous.window.application`` — no pairing of consecutive events. The
span still open (the window focused right now) is the last ``window.focus`` or
``window.active`` event's ``window``, running since that event's time.

* ``window.focus`` — at the moment focus or the title changed: the window focused now
  (None when no window has focus, or the agent stops watching: ``cause="stop"``) and
  the span that just ended. While the user is idle no span is open, so focus changes
  then carry ``previous=None``.
* ``window.idle`` — input stopped for longer than the threshold. Its time is when
  input stopped (not when the agent noticed), so the ended span excludes idle time.
* ``window.active`` — input resumed after idleness: how long the user was away and
  the window focused now (a new span starts).

Titles may be withheld by policy (``record_titles``/``exclude_applications``):
``title`` is then empty and ``title_hidden`` true.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from sekimori.protocol.events._base import Payload

__all__ = ["KINDS", "FocusSpan", "WindowActive", "WindowFocus", "WindowIdle", "WindowInfo"]


class WindowInfo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A top-level window and the program behind it."""

    window: int
    """The X window id (tells two windows of one application apart)."""
    title: str
    title_hidden: bool = False
    """The title was withheld by policy; ``title`` is empty."""
    application: str
    """WM_CLASS class, e.g. ``XTerm``, ``Chromium``; empty when the window sets none."""
    instance: str
    """WM_CLASS instance, e.g. ``xterm``."""
    pid: int | None
    """``_NET_WM_PID``; None when the window does not say or runs on another host."""
    exe: str
    """The process's executable; empty when unknown."""
    user: str
    """The OS user running the process (uid as text without a name); empty if unknown."""


class FocusSpan(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A period during which one window (with one title) had focus, input active."""

    window: WindowInfo
    start_us: int
    duration_us: int


class WindowFocus(Payload, kw_only=True):
    cause: Literal["start", "focus", "title", "stop"]
    """start: the collector began watching; focus: another window became active;
    title: the focused window's title changed; stop: the collector stops watching."""
    window: WindowInfo | None
    previous: FocusSpan | None


class WindowIdle(Payload, kw_only=True):
    idle_since_us: int
    """The last keyboard or mouse input."""
    threshold_ms: int
    previous: FocusSpan | None


class WindowActive(Payload, kw_only=True):
    idle_since_us: int
    idle_duration_us: int
    window: WindowInfo | None


KINDS: Final[dict[str, type[Payload]]] = {
    "window.focus": WindowFocus,
    "window.idle": WindowIdle,
    "window.active": WindowActive,
}
