"""A validated rule: what it matches, when, where, and how often before it fires."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from sekimori.server.rules.conditions import Condition
from sekimori.server.rules.paths import FieldPath

__all__ = ["SEVERITIES", "Rule", "Schedule", "Severity", "Threshold"]

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Threshold:
    """Fire when *more than* ``count`` matching events share the ``by`` values within
    ``within_us`` microseconds (``count: 200`` fires on the 201st)."""

    count: int
    within_us: int
    by: tuple[FieldPath, ...]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Working hours: ``days`` (0 = Monday) from ``start`` to ``end`` local time in
    ``timezone``. ``mode`` "outside": the rule matches only for events outside those
    hours (weekends and holidays count as outside); "inside": only within them. When
    ``end`` <= ``start`` the hours run past midnight and belong to the day they start."""

    mode: Literal["inside", "outside"]
    days: frozenset[int]
    start: dt.time
    end: dt.time
    timezone: ZoneInfo

    def within_hours(self, time_us: int) -> bool:
        # Hours are whole minutes and so are time-zone offsets today: the answer is the
        # same for a whole minute, and converting a time to a zone costs microseconds.
        return _within_minute(self, time_us // 60_000_000)

    def _within_hours(self, minute: int) -> bool:
        local = dt.datetime.fromtimestamp(minute * 60, tz=self.timezone)
        clock = local.time().replace(tzinfo=None)
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= clock < self.end
        if clock >= self.start:
            return day in self.days
        return clock < self.end and (day - 1) % 7 in self.days

    def admits(self, time_us: int) -> bool:
        """Whether an event at ``time_us`` falls where the rule applies."""
        return self.within_hours(time_us) == (self.mode == "inside")


@functools.lru_cache(maxsize=8192)
def _within_minute(schedule: Schedule, minute: int) -> bool:
    return schedule._within_hours(minute)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule. ``kinds``: the event kinds it applies to. ``groups``: the device groups
    it applies to (empty: every group). ``source``/``line``: where it was written."""

    id: str
    title: str
    description: str
    severity: Severity
    enabled: bool
    kinds: tuple[str, ...]
    match: Condition
    threshold: Threshold | None = None
    schedule: Schedule | None = None
    groups: frozenset[str] = frozenset()
    source: str = "<rules>"
    line: int = 0
