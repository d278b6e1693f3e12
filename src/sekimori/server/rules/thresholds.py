"""Sliding-window counts for threshold rules, with state that survives a restart.

For each (rule, key) — the key being the values of the rule's ``by`` paths — the
tracker keeps the times of the newest ``count + 1`` matching events: the rule fires
when those span less than the window, i.e. more than ``count`` events fell within it.
Memory per key is bounded by the threshold, whatever the event rate.

Dedup: after firing at time t the key is quiet until t + window (the window has fully
passed), and the kept times are cleared, so a continuing storm raises one match per
window, never one per event. Events are placed by their own time, so a late batch
from an agent that was offline is counted where it belongs.

``export_state`` / ``ThresholdTracker.from_state`` turn the tracker into plain data
(JSON-able) and back, so the caller can persist it with the ingest position it
covers and neither lose nor repeat alerts across a restart.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import msgspec

from sekimori.server.rules.errors import ThresholdStateError
from sekimori.server.rules.model import Threshold

__all__ = ["ThresholdTracker"]

Key = tuple[Any, ...]
STATE_VERSION = 1


class _WindowState(msgspec.Struct, forbid_unknown_fields=True):
    rule: str
    key: list[str | int | float | bool | None]
    times: list[int]
    quiet_until_us: int
    last_us: int


class _TrackerState(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    windows: list[_WindowState]


@dataclass(slots=True)
class _Window:
    times: list[int] = field(default_factory=list)
    quiet_until_us: int = 0
    last_us: int = 0


class ThresholdTracker:
    """Counts matches per (rule id, key). Not thread-safe: one tracker per evaluator."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, Key], _Window] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def observe(self, rule_id: str, threshold: Threshold, key: Key, time_us: int) -> int | None:
        """Count one matching event. Returns the number of events in the window when
        this event makes the rule fire, else None."""
        window = self._windows.get((rule_id, key))
        if window is None:
            window = self._windows[(rule_id, key)] = _Window()
        times = window.times
        if not times or time_us >= times[-1]:
            times.append(time_us)
        else:
            bisect.insort(times, time_us)
        keep = threshold.count + 1
        if len(times) > keep:
            del times[: len(times) - keep]
        window.last_us = max(window.last_us, time_us)
        newest = times[-1]
        if (
            len(times) == keep
            and newest - times[0] < threshold.within_us
            and newest >= window.quiet_until_us
        ):
            window.quiet_until_us = newest + threshold.within_us
            times.clear()
            return keep
        return None

    def expire(self, now_us: int, longest_window_us: int) -> int:
        """Forget keys with no event for longer than ``longest_window_us`` and no quiet
        period running at ``now_us``; returns how many were dropped."""
        stale = [
            k
            for k, w in self._windows.items()
            if w.last_us + longest_window_us < now_us and w.quiet_until_us <= now_us
        ]
        for k in stale:
            del self._windows[k]
        return len(stale)

    def export_state(self) -> dict[str, Any]:
        """Plain data (dicts, lists, numbers, strings) that ``from_state`` accepts."""
        state = _TrackerState(
            STATE_VERSION,
            [
                _WindowState(rule, list(key), list(w.times), w.quiet_until_us, w.last_us)
                for (rule, key), w in self._windows.items()
            ],
        )
        result: dict[str, Any] = msgspec.to_builtins(state)
        return result

    @classmethod
    def from_state(cls, data: Any) -> ThresholdTracker:
        """Rebuild a tracker. Raises ThresholdStateError when ``data`` is not an export."""
        try:
            state = msgspec.convert(data, _TrackerState)
        except msgspec.ValidationError as exc:
            raise ThresholdStateError(f"threshold state: {exc}") from None
        if state.version != STATE_VERSION:
            raise ThresholdStateError(f"threshold state version {state.version} is not known")
        tracker = cls()
        for w in state.windows:
            tracker._windows[(w.rule, tuple(w.key))] = _Window(
                sorted(w.times), w.quiet_until_us, w.last_us
            )
        return tracker
