"""The condition tree of a rule and its compilation into plain functions.

A rule's ``match`` is a tree of ``FieldTest`` leaves (a path and an operator) under
``AllOf`` / ``AnyOf`` / ``NotOf``. The tree is data (it compares, prints, and is what
the loader validated); ``compile`` turns it into nested closures once, when a
``RuleSet`` is built with the named lists, because evaluation runs for every ingested
event and attribute lookups on dataclasses would cost more than the tests themselves.

Semantics every operator shares: a value of the wrong type, or a path that leads
nowhere in this event, makes the test false (never an exception) — including
``not_equals``. Use ``not`` to say "absent or different".
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sekimori.server.rules.errors import RuleError, UnknownListError
from sekimori.server.rules.event import EvalEvent
from sekimori.server.rules.paths import MISSING, FieldPath

__all__ = [
    "AllOf",
    "Always",
    "AnyOf",
    "Cidr",
    "Compare",
    "Condition",
    "Equals",
    "FieldTest",
    "InList",
    "ListRef",
    "NamedLists",
    "NotOf",
    "Operator",
    "Predicate",
    "Regex",
    "TextMatch",
    "address_ranges",
    "bind_list",
    "lookup_address",
]

Predicate = Callable[[EvalEvent], bool]
ValueTest = Callable[[Any], bool]
NamedLists = Mapping[str, frozenset[str]]
Scalar = str | int | float | bool | None
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ListRef:
    """A reference to a list the caller supplies (``{list: blocked_domains}``)."""

    name: str
    line: int


def _same_type(a: Any, b: Any) -> bool:
    # bool is an int in Python; a rule's `equals: true` must not match the number 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b)


@dataclass(frozen=True, slots=True)
class Equals:
    value: Scalar
    negate: bool = False

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> ValueTest:
        expected, negate = self.value, self.negate
        if negate and expected is None:
            return lambda v: v is not None
        if negate:
            return lambda v: _same_type(v, expected) and v != expected
        if isinstance(expected, str):
            return lambda v: v == expected and isinstance(v, str)
        return lambda v: v == expected and _same_type(v, expected)


@dataclass(frozen=True, slots=True)
class TextMatch:
    op: Literal["contains", "startswith", "endswith"]
    value: str

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> ValueTest:
        needle = self.value
        if self.op == "contains":
            return lambda v: isinstance(v, str) and needle in v
        if self.op == "startswith":
            return lambda v: isinstance(v, str) and v.startswith(needle)
        return lambda v: isinstance(v, str) and v.endswith(needle)


@dataclass(frozen=True, slots=True)
class Regex:
    """``re.search`` with a pattern compiled at load. Python's engine backtracks, so a
    pattern such as ``(a+)+$`` can take exponential time on a crafted value (ReDoS):
    patterns are limited to 512 characters, and rules are written by administrators,
    not by the monitored users — but a careless pattern can still slow ingest."""

    pattern: re.Pattern[str]

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> ValueTest:
        search = self.pattern.search
        return lambda v: isinstance(v, str) and search(v) is not None


def bind_list(ref: ListRef, lists: NamedLists, rule_id: str, source: str) -> frozenset[str]:
    try:
        return lists[ref.name]
    except KeyError:
        raise UnknownListError(rule_id, ref.name, source, ref.line) from None


@dataclass(frozen=True, slots=True)
class InList:
    """Membership in an inline list or a named one. ``domain``: a host matches when it
    is a listed domain or a subdomain of one (``ads.example.com`` in ``example.com``),
    compared case-insensitively."""

    values: frozenset[Scalar] | ListRef
    domain: bool = False

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> ValueTest:
        if isinstance(self.values, ListRef):
            members: frozenset[Any] = bind_list(self.values, lists, rule_id, source)
        else:
            members = self.values
        if self.domain:
            domains = frozenset(str(m).lower().rstrip(".") for m in members)
            return lambda v: isinstance(v, str) and _in_domains(v, domains)
        if any(isinstance(m, bool) for m in members):
            return lambda v: any(v == m and _same_type(v, m) for m in members)
        # Without bool members a set lookup does it; a bool value is left out so that
        # True does not match a listed 1.
        return lambda v: not isinstance(v, bool) and _hashable(v) and v in members


def address_ranges(
    cidr: Cidr, lists: NamedLists, rule_id: str, source: str
) -> tuple[tuple[int, int, int], ...]:
    """The networks of ``cidr`` as (IP version, first, last address as numbers)."""
    if isinstance(cidr.networks, ListRef):
        networks = []
        for entry in sorted(bind_list(cidr.networks, lists, rule_id, source)):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise RuleError(
                    f"rule {rule_id!r}: list {cidr.networks.name!r} holds {entry!r}, "
                    "which is not an address or network"
                ) from None
        nets: tuple[Network, ...] = tuple(networks)
    else:
        nets = cidr.networks
    return tuple(
        (net.version, int(net.network_address), int(net.broadcast_address)) for net in nets
    )


@functools.lru_cache(maxsize=65536)
def lookup_address(text: str) -> tuple[int, int] | None:
    """(IP version, address as a number), or None when ``text`` is not an address.
    Cached: a fleet talks to a limited set of addresses, and parsing is the costly part."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.version, int(address)


def _hashable(v: Any) -> bool:
    return isinstance(v, str | int | float) or v is None


def _in_domains(host: str, domains: frozenset[str]) -> bool:
    host = host.lower().rstrip(".")
    while True:
        if host in domains:
            return True
        dot = host.find(".")
        if dot < 0:
            return False
        host = host[dot + 1 :]


@dataclass(frozen=True, slots=True)
class Cidr:
    """The value is an IP address inside one of the networks."""

    networks: tuple[Network, ...] | ListRef

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> ValueTest:
        ranges = address_ranges(self, lists, rule_id, source)

        def test(value: Any) -> bool:
            if not isinstance(value, str):
                return False
            address = lookup_address(value)
            if address is None:
                return False
            version, number = address
            return any(v == version and low <= number <= high for v, low, high in ranges)

        return test


@dataclass(frozen=True, slots=True)
class Compare:
    op: Literal["gt", "gte", "lt", "lte"]
    value: float

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> ValueTest:
        x = self.value

        def number(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        if self.op == "gt":
            return lambda v: number(v) and v > x
        if self.op == "gte":
            return lambda v: number(v) and v >= x
        if self.op == "lt":
            return lambda v: number(v) and v < x
        return lambda v: number(v) and v <= x


Operator = Equals | TextMatch | Regex | InList | Cidr | Compare


class Condition(Protocol):
    """A node of a rule's condition tree (ours, or a Sigma detection)."""

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> Predicate:
        """A function of an event, true when the condition holds. Raises RuleError when
        a named list is missing or unusable."""
        ...

    def list_refs(self) -> Iterator[ListRef]:
        """The named lists this condition needs."""
        ...


@dataclass(frozen=True, slots=True)
class FieldTest:
    path: FieldPath
    operator: Operator
    line: int

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> Predicate:
        get = self.path.getter()
        test = self.operator.compile(lists, rule_id, source)
        key = self.path.single_key
        if key is not None:
            # The common case, one payload field: one call fewer per event and rule.
            def payload_field(event: EvalEvent) -> bool:
                value = getattr(event.payload, key, MISSING)
                return value is not MISSING and test(value)

            return payload_field
        if self.path.many:
            return lambda event: any(test(v) for v in get(event))

        def predicate(event: EvalEvent) -> bool:
            value = get(event)
            return value is not MISSING and test(value)

        return predicate

    def list_refs(self) -> Iterator[ListRef]:
        values = getattr(self.operator, "values", None) or getattr(self.operator, "networks", None)
        if isinstance(values, ListRef):
            yield values


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Condition, ...]

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> Predicate:
        tests = tuple(c.compile(lists, rule_id, source) for c in self.children)
        if len(tests) == 1:
            return tests[0]
        if len(tests) == 2:
            first, second = tests
            return lambda event: first(event) and second(event)
        return lambda event: all(test(event) for test in tests)

    def list_refs(self) -> Iterator[ListRef]:
        for child in self.children:
            yield from child.list_refs()


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Condition, ...]

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> Predicate:
        tests = tuple(c.compile(lists, rule_id, source) for c in self.children)
        if len(tests) == 1:
            return tests[0]
        return lambda event: any(test(event) for test in tests)

    def list_refs(self) -> Iterator[ListRef]:
        for child in self.children:
            yield from child.list_refs()


@dataclass(frozen=True, slots=True)
class NotOf:
    child: Condition

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> Predicate:
        test = self.child.compile(lists, rule_id, source)
        return lambda event: not test(event)

    def list_refs(self) -> Iterator[ListRef]:
        yield from self.child.list_refs()


@dataclass(frozen=True, slots=True)
class Always:
    """No ``match``: every event of the rule's kinds."""

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> Predicate:
        return lambda event: True

    def list_refs(self) -> Iterator[ListRef]:
        return iter(())
