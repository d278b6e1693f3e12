"""Evaluating rules on events: a compiled, kind-indexed ``RuleSet``.

``RuleSet(rules, lists)`` compiles each enabled rule's condition once (binding the
named lists) and indexes the rules by event kind, so an event is tested only against
the rules for its kind: with the built-in pack plus a hundred rules, most events meet a
handful of rules or none. ``evaluate`` never raises on an event's content — a field of
an unexpected type makes its test false.

Order of the checks per rule, cheapest first: group scope, schedule, condition, then
the threshold count (only events that match are counted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sekimori.server.rules.conditions import Predicate
from sekimori.server.rules.errors import RuleError
from sekimori.server.rules.event import EvalEvent
from sekimori.server.rules.index import KindIndex
from sekimori.server.rules.model import Rule, Severity
from sekimori.server.rules.paths import MISSING
from sekimori.server.rules.thresholds import Key, ThresholdTracker

__all__ = ["Match", "RuleSet"]


@dataclass(frozen=True, slots=True)
class Match:
    """A rule fired on ``event``. For a threshold rule, ``count`` is the number of
    events in the window when it fired and ``key`` the ``by`` values; otherwise 1 and ()."""

    rule: Rule
    event: EvalEvent
    count: int = 1
    key: Key = ()

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def severity(self) -> Severity:
        return self.rule.severity


@dataclass(frozen=True, slots=True, eq=False)
class _Compiled:
    order: int
    rule: Rule
    test: Predicate
    key_getters: tuple[Any, ...]
    # Group scope or schedule to check before the condition.
    scoped: bool


def _order(entry: _Compiled) -> int:
    return entry.order


class RuleSet:
    """The rules in force. Build a new one when rules or lists change (cheap: compiling
    a few hundred rules takes milliseconds); pass the old set's ``thresholds`` on so
    counts carry over.

    Raises RuleError (UnknownListError) when a rule needs a list not in ``lists``, and
    when two rules share an id.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        lists: Mapping[str, Iterable[str]] | None = None,
        thresholds: ThresholdTracker | None = None,
    ) -> None:
        bound = {name: frozenset(values) for name, values in (lists or {}).items()}
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.thresholds = thresholds if thresholds is not None else ThresholdTracker()
        self._index: dict[str, KindIndex[_Compiled]] = {}
        seen: set[str] = set()
        for order, rule in enumerate(self.rules):
            if rule.id in seen:
                raise RuleError(
                    f"{rule.source} line {rule.line}: rule id {rule.id!r} is used twice"
                )
            seen.add(rule.id)
            if not rule.enabled:
                continue
            test = rule.match.compile(bound, rule.id, rule.source)
            getters = tuple(p.getter() for p in rule.threshold.by) if rule.threshold else ()
            scoped = bool(rule.groups) or rule.schedule is not None
            compiled = _Compiled(order, rule, test, getters, scoped)
            for kind in rule.kinds:
                index = self._index.get(kind)
                if index is None:
                    index = self._index[kind] = KindIndex()
                index.add(rule.match, compiled, bound, rule.id, rule.source)
        for index in self._index.values():
            index.finish()
        self.longest_window_us = max(
            (r.threshold.within_us for r in self.rules if r.threshold), default=0
        )
        # The kinds some enabled rule looks at: any other event needs no evaluation
        # (the ingest writer does not even decode its payload).
        self.kinds: frozenset[str] = frozenset(self._index)
        # The kinds an enabled threshold rule counts (their events touch the tracker).
        self.threshold_kinds: frozenset[str] = frozenset(
            kind for r in self.rules if r.enabled and r.threshold for kind in r.kinds
        )

    def rules_for(self, kind: str) -> tuple[Rule, ...]:
        """The enabled rules an event of ``kind`` may be tested against."""
        index = self._index.get(kind)
        if index is None:
            return ()
        entries = {id(e): e for e in index.entries}
        return tuple(e.rule for e in sorted(entries.values(), key=_order))

    def evaluate(self, event: EvalEvent, thresholds: ThresholdTracker | None = None) -> list[Match]:
        """The rules that fire on ``event`` (threshold rules count it, and fire once
        when their count is first exceeded within the window). ``thresholds``: the
        tracker to count in instead of the set's own (ingest keeps one per device)."""
        index = self._index.get(event.kind)
        if index is None:
            return []
        found = index.candidates(event)
        if not found:
            return []
        if len(found) > 1:
            found = sorted(dict.fromkeys(found), key=_order)
        matches: list[Match] = []
        for entry in found:
            rule = entry.rule
            if entry.scoped:
                if rule.groups and event.group not in rule.groups:
                    continue
                if rule.schedule is not None and not rule.schedule.admits(event.time_us):
                    continue
            if not entry.test(event):
                continue
            if rule.threshold is None:
                matches.append(Match(rule, event))
                continue
            key = tuple(None if (v := get(event)) is MISSING else v for get in entry.key_getters)
            tracker = self.thresholds if thresholds is None else thresholds
            count = tracker.observe(rule.id, rule.threshold, key, event.time_us)
            if count is not None:
                matches.append(Match(rule, event, count, key))
        return matches
