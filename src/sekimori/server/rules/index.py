"""Finding the few rules an event can match without testing every rule of its kind.

Testing each rule in turn costs a few hundred nanoseconds per rule and event; with a
hundred rules that alone would eat most of ingest's budget (about 10 µs per event).
So each rule is *anchored* on one test that its condition requires (the condition
itself, or one test of a top-level ``all``), and the anchors of all rules of a kind
are indexed per field path:

* ``equals`` / ``in`` (inline or a named list): one dictionary lookup of the event's
  value finds every rule anchored on it;
* ``domain_in``: one lookup per label suffix of the host;
* ``contains`` / ``startswith`` / ``endswith`` / ``regex``: one combined regular
  expression per path is searched first; only when it finds something are the rules
  of that path tested;
* ``cidr``: the networks of all rules of the path are checked first, at once;
* ``gt`` / ``gte`` / ``lt`` / ``lte``: the rules of the path are tested only for a
  number beyond the lowest floor or the highest ceiling among them.

What a host or an address hits is remembered (a bounded memo per path): a fleet visits
the same sites and talks to the same addresses over and over.

A rule found this way is then tested in full. Rules with no anchor (no ``match``, a
``not`` or ``any`` at the top, Sigma detections) are tested one by one as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sekimori.server.rules.conditions import (
    AllOf,
    Cidr,
    Compare,
    Condition,
    Equals,
    FieldTest,
    InList,
    ListRef,
    NamedLists,
    Regex,
    TextMatch,
    address_ranges,
    bind_list,
    lookup_address,
)
from sekimori.server.rules.event import EvalEvent
from sekimori.server.rules.paths import MISSING

__all__ = ["KindIndex"]

T = TypeVar("T")
_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")
_MEMO_SIZE = 16384


def _key(value: Any) -> Any:
    # bool is an int, and True == 1 hashes alike: keep the types apart in the keys.
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    return value


def anchor_of(condition: Condition) -> FieldTest | None:
    """The test to index the rule by: the most selective required FieldTest."""
    tests: list[FieldTest] = []
    if isinstance(condition, FieldTest):
        tests = [condition]
    elif isinstance(condition, AllOf):
        tests = [c for c in condition.children if isinstance(c, FieldTest)]
    ranked = sorted((t for t in tests if _rank(t) is not None), key=lambda t: _rank(t) or 0)
    return ranked[0] if ranked else None


def _rank(test: FieldTest) -> int | None:
    op = test.operator
    if isinstance(op, Equals) and not op.negate:
        return 0
    if isinstance(op, InList):
        return 1 if op.domain else 0
    if isinstance(op, Cidr):
        return 2
    if isinstance(op, TextMatch):
        return 3
    if isinstance(op, Regex) and not _BACKREFERENCE.search(op.pattern.pattern):
        return 4
    if isinstance(op, Compare):
        return 5
    return None


@dataclass(slots=True)
class _PathIndex(Generic[T]):
    getter: Callable[[EvalEvent], Any]
    many: bool
    hashed: dict[Any, list[T]] = field(default_factory=dict)
    domains: dict[str, list[T]] = field(default_factory=dict)
    patterns: list[str] = field(default_factory=list)
    pattern_entries: list[T] = field(default_factory=list)
    prefilter: re.Pattern[str] | None = None
    ranges: list[tuple[int, int, int]] = field(default_factory=list)
    cidr_entries: list[T] = field(default_factory=list)
    # gt/gte/lt/lte: a number at or above the lowest floor, or at or below the highest
    # ceiling, may pass one of them.
    compare_entries: list[T] = field(default_factory=list)
    lowest_floor: float = float("inf")
    highest_ceiling: float = float("-inf")
    memo: dict[str, tuple[T, ...]] | None = None

    def add(self, test: FieldTest, entry: T, lists: NamedLists, rule_id: str, source: str) -> None:
        op = test.operator
        if isinstance(op, Equals):
            self.hashed.setdefault(_key(op.value), []).append(entry)
        elif isinstance(op, InList):
            members = (
                bind_list(op.values, lists, rule_id, source)
                if isinstance(op.values, ListRef)
                else op.values
            )
            for member in members:
                if op.domain:
                    domain = str(member).lower().rstrip(".")
                    self.domains.setdefault(domain, []).append(entry)
                else:
                    self.hashed.setdefault(_key(member), []).append(entry)
        elif isinstance(op, Cidr):
            self.ranges.extend(address_ranges(op, lists, rule_id, source))
            self.cidr_entries.append(entry)
        elif isinstance(op, TextMatch):
            needle = re.escape(op.value)
            self.patterns.append(
                {"contains": needle, "startswith": "^" + needle, "endswith": needle + r"\Z"}[op.op]
            )
            self.pattern_entries.append(entry)
        elif isinstance(op, Regex):
            self.patterns.append(op.pattern.pattern)
            self.pattern_entries.append(entry)
        elif isinstance(op, Compare):
            if op.op in ("gt", "gte"):
                self.lowest_floor = min(self.lowest_floor, op.value)
            else:
                self.highest_ceiling = max(self.highest_ceiling, op.value)
            self.compare_entries.append(entry)

    def finish(self) -> None:
        # Hosts, addresses and executables repeat across a fleet: remember what each
        # one hits (a URL rarely repeats, and then costs one dict lookup more).
        if self.domains or self.ranges or self.patterns:
            self.memo = {}
        if self.patterns:
            try:
                self.prefilter = re.compile("|".join(f"(?:{p})" for p in self.patterns))
            except re.error:
                # Patterns that cannot be joined (inline flags): no prefilter, the
                # rules of this path are always tested.
                self.prefilter = re.compile("")

    def candidates(self, event: EvalEvent, found: list[T]) -> None:
        value = self.getter(event)
        if self.many:
            for v in value:
                found.extend(self._hits(v))
        elif value is not MISSING:
            # _hits inlined for the common single value: this runs for every event.
            memo = self.memo
            if memo is not None and type(value) is str:
                hits: Sequence[T] | None = memo.get(value)
                if hits is None:
                    hits = self._hits(value)
                if hits:
                    found.extend(hits)
            else:
                found.extend(self._compute(value))

    def _hits(self, value: Any) -> Sequence[T]:
        if type(value) is str and self.memo is not None:
            # Hosts and addresses repeat across a fleet: remember what each one hits.
            hits = self.memo.get(value)
            if hits is None:
                if len(self.memo) >= _MEMO_SIZE:
                    self.memo.clear()
                hits = self.memo[value] = tuple(self._compute(value))
            return hits
        return self._compute(value)

    def _compute(self, value: Any) -> list[T]:
        found: list[T] = []
        if self.hashed:
            try:
                hits = self.hashed.get(_key(value))
            except TypeError:  # an unhashable value: no rule can equal it
                hits = None
            if hits:
                found.extend(hits)
        if isinstance(value, str):
            if self.domains:
                host = value.lower().rstrip(".")
                while True:
                    hits = self.domains.get(host)
                    if hits:
                        found.extend(hits)
                    dot = host.find(".")
                    if dot < 0:
                        break
                    host = host[dot + 1 :]
            if self.prefilter is not None and self.prefilter.search(value) is not None:
                found.extend(self.pattern_entries)
            if self.ranges:
                address = lookup_address(value)
                if address is not None:
                    version, number = address
                    if any(
                        ver == version and low <= number <= high for ver, low, high in self.ranges
                    ):
                        found.extend(self.cidr_entries)
        elif self.compare_entries and _number_beyond(
            value, self.lowest_floor, self.highest_ceiling
        ):
            found.extend(self.compare_entries)
        return found


def _number_beyond(value: Any, floor: float, ceiling: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value >= floor or value <= ceiling


class KindIndex(Generic[T]):
    """The rules of one event kind: anchored ones by path, the rest in ``linear``."""

    def __init__(self) -> None:
        self._paths: dict[str, _PathIndex[T]] = {}
        self.linear: list[T] = []
        self.entries: list[T] = []

    def add(
        self, condition: Condition, entry: T, lists: NamedLists, rule_id: str, source: str
    ) -> None:
        self.entries.append(entry)
        anchor = anchor_of(condition)
        if anchor is None:
            self.linear.append(entry)
            return
        path = anchor.path
        index = self._paths.get(path.text)
        if index is None:
            index = self._paths[path.text] = _PathIndex(path.getter(), path.many)
        index.add(anchor, entry, lists, rule_id, source)

    def finish(self) -> None:
        for index in self._paths.values():
            index.finish()

    def candidates(self, event: EvalEvent) -> list[T]:
        """Entries worth testing in full: possibly with repeats, linear ones last."""
        found: list[T] = []
        for index in self._paths.values():
            index.candidates(event, found)
        found.extend(self.linear)
        return found
