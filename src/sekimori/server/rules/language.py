"""The rule language: YAML text → validated ``Rule`` objects, errors naming the line.

A file holds one rule (a mapping) or several (a list of mappings), in one or more YAML
documents. The YAML is composed into nodes (PyYAML keeps each node's line and column)
and walked here by hand, so every mistake — an unknown key, a misspelt operator, a
field the event kind does not have, a regex that does not compile — is reported as
``RuleSyntaxError("rules.yaml line 7, column 9: 'contians' is not an operator; …")``.
docs/rules.md is the administrators' description of the language.

Anchors and aliases are refused (a few lines of aliases can expand into millions of
nodes), and so are files over 1 MiB.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sekimori.protocol.events import EVENT_KINDS
from sekimori.server.rules.conditions import (
    AllOf,
    Always,
    AnyOf,
    Cidr,
    Compare,
    Condition,
    Equals,
    FieldTest,
    InList,
    ListRef,
    NotOf,
    Operator,
    Regex,
    Scalar,
    TextMatch,
)
from sekimori.server.rules.errors import RuleSyntaxError
from sekimori.server.rules.model import SEVERITIES, Rule, Schedule, Severity, Threshold
from sekimori.server.rules.paths import FieldPath, LeafType, resolve_path
from sekimori.server.rules.regex_safety import nested_repetition

__all__ = [
    "MAX_REGEX_LENGTH",
    "MAX_RULE_FILE_BYTES",
    "OPERATORS",
    "load_builtin_rules",
    "load_rule_file",
    "load_rules",
    "parse_duration",
]

MAX_RULE_FILE_BYTES: Final = 1024 * 1024
MAX_REGEX_LENGTH: Final = 512
MAX_WINDOW_US: Final = 31 * 86_400 * 1_000_000

OPERATORS: Final = (
    "equals",
    "not_equals",
    "contains",
    "startswith",
    "endswith",
    "regex",
    "in",
    "domain_in",
    "cidr",
    "gt",
    "gte",
    "lt",
    "lte",
)
_COMBINATORS: Final = ("all", "any", "not")
_RULE_KEYS: Final = (
    "id",
    "title",
    "description",
    "severity",
    "enabled",
    "kinds",
    "match",
    "threshold",
    "schedule",
    "groups",
)
_REQUIRED: Final = ("id", "title", "severity", "kinds")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DAYS: Final = {
    name: index
    for index, names in enumerate(
        [
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        ]
    )
    for name in names
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (billion-laughs expansion)."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            mark = event.start_mark
            raise RuleSyntaxError(
                self.name, mark.line + 1, mark.column + 1, "anchors and aliases are not allowed"
            )
        return super().compose_node(parent, index)


def load_builtin_rules() -> list[Rule]:
    """The built-in pack shipped in ``sekimori/server/rules/builtin/*.yaml``."""
    rules: list[Rule] = []
    folder = resources.files("sekimori.server.rules") / "builtin"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            rules.extend(load_rules(entry.read_text(encoding="utf-8"), f"builtin/{entry.name}"))
    return rules


def load_rule_file(path: Path) -> list[Rule]:
    """Load the rules of one file; errors name it by its file name."""
    data = path.read_bytes()
    return load_rules(data, path.name)


def load_rules(text: str | bytes, source: str = "<rules>") -> list[Rule]:
    """Parse and validate rules. Raises RuleSyntaxError (source, line, column, reason)."""
    if len(text) > MAX_RULE_FILE_BYTES:
        raise RuleSyntaxError(source, 0, 0, f"larger than {MAX_RULE_FILE_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RuleSyntaxError(source, 0, 0, f"not UTF-8 text ({exc.reason})") from None
    parser = _Parser(source)
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for document in parser.documents(text):
        items = document.value if isinstance(document, SequenceNode) else [document]
        for node in items:
            rule = parser.rule(node)
            if rule.id in seen:
                parser.fail(
                    node, f"rule id {rule.id!r} is used twice (first at line {seen[rule.id]})"
                )
            seen[rule.id] = rule.line
            rules.append(rule)
    return rules


def parse_duration(text: str) -> int:
    """``"90s"``, ``"5m"``, ``"2h"``, ``"1d"`` → microseconds. Raises ValueError."""
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a duration; write a number and s, m, h or d (5m)")
    return int(found.group(1)) * _UNITS[found.group(2)] * 1_000_000


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = SafeConstructor()

    # -- nodes -----------------------------------------------------------------
    def fail(self, node: Node, message: str) -> NoReturn:
        mark = node.start_mark
        raise RuleSyntaxError(self.source, mark.line + 1, mark.column + 1, message)

    def documents(self, text: str) -> Iterator[Node]:
        try:
            # The reader checks the characters as it is built: inside the try.
            loader = _Loader(text)
        except yaml.YAMLError as exc:
            raise RuleSyntaxError(self.source, 0, 0, f"not valid YAML: {exc}") from None
        loader.name = self.source
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is not None:
                    yield node
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            reason = exc.problem or exc.context or "not valid YAML"
            raise RuleSyntaxError(self.source, line, column, f"not valid YAML: {reason}") from None
        except yaml.YAMLError as exc:
            raise RuleSyntaxError(self.source, 0, 0, f"not valid YAML: {exc}") from None
        finally:
            loader.dispose()

    def scalar(self, node: Node, what: str) -> Scalar:
        if not isinstance(node, ScalarNode):
            self.fail(node, f"{what} must be a single value, not a {_shape(node)}")
        try:
            value = self._constructor.construct_object(node)
        except yaml.YAMLError:
            self.fail(node, f"{what}: {node.value!r} is not a valid value")
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        # Timestamps and binary: keep the text the author wrote.
        return str(node.value)

    def string(self, node: Node, what: str) -> str:
        value = self.scalar(node, what)
        if not isinstance(value, str) or not value:
            self.fail(node, f"{what} must be text")
        return value

    def mapping(self, node: Node, what: str) -> list[tuple[str, Node, Node]]:
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping (key: value lines), not a {_shape(node)}")
        items: list[tuple[str, Node, Node]] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = self.scalar(key_node, "a key")
            if not isinstance(key, str):
                self.fail(key_node, f"key {key!r} must be text")
            if key in seen:
                self.fail(key_node, f"{key!r} is given twice")
            seen.add(key)
            items.append((key, key_node, value_node))
        return items

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.fail(node, f"{what} must be a list, not a {_shape(node)}")
        return list(node.value)

    def strings(self, node: Node, what: str) -> list[tuple[str, Node]]:
        items = [node] if isinstance(node, ScalarNode) else self.sequence(node, what)
        return [(self.string(item, what), item) for item in items]

    # -- a rule ----------------------------------------------------------------
    def rule(self, node: Node) -> Rule:
        fields = {key: (key_node, value) for key, key_node, value in self.mapping(node, "a rule")}
        for key, (key_node, _) in fields.items():
            if key not in _RULE_KEYS:
                self.fail(
                    key_node, f"{key!r} is not a rule key; expected one of {_list(_RULE_KEYS)}"
                )
        for key in _REQUIRED:
            if key not in fields:
                self.fail(node, f"the rule has no {key!r}")
        rule_id = self.string(fields["id"][1], "id")
        if not _ID.match(rule_id):
            self.fail(
                fields["id"][1], f"id {rule_id!r}: use letters, digits and _ . : - (128 at most)"
            )
        severity_node = fields["severity"][1]
        severity = self.scalar(severity_node, "severity")
        if severity not in SEVERITIES:
            self.fail(severity_node, f"severity {severity!r}; expected one of {_list(SEVERITIES)}")
        enabled: Any = True
        if "enabled" in fields:
            enabled = self.scalar(fields["enabled"][1], "enabled")
            if not isinstance(enabled, bool):
                self.fail(fields["enabled"][1], "enabled must be true or false")
        description = ""
        if "description" in fields:
            description = self.string(fields["description"][1], "description")
        kinds = self.kinds(fields["kinds"][1])
        groups: frozenset[str] = frozenset()
        if "groups" in fields:
            groups = frozenset(g for g, _ in self.strings(fields["groups"][1], "groups"))
        return Rule(
            id=rule_id,
            title=self.string(fields["title"][1], "title"),
            description=description,
            severity=_severity(severity),
            enabled=enabled,
            kinds=kinds,
            match=self.condition(fields["match"][1], kinds) if "match" in fields else Always(),
            threshold=self.threshold(fields["threshold"][1], kinds)
            if "threshold" in fields
            else None,
            schedule=self.schedule(fields["schedule"][1]) if "schedule" in fields else None,
            groups=groups,
            source=self.source,
            line=node.start_mark.line + 1,
        )

    def kinds(self, node: Node) -> tuple[str, ...]:
        kinds: list[str] = []
        for kind, item in self.strings(node, "kinds"):
            if kind not in EVENT_KINDS:
                near = [k for k in EVENT_KINDS if k.split(".")[0] == kind.split(".")[0]]
                hint = _list(near or sorted(EVENT_KINDS))
                self.fail(item, f"{kind!r} is not an event kind; expected one of {hint}")
            if kind not in kinds:
                kinds.append(kind)
        if not kinds:
            self.fail(node, "kinds must list at least one event kind")
        return tuple(kinds)

    # -- match -----------------------------------------------------------------
    def condition(self, node: Node, kinds: tuple[str, ...]) -> Condition:
        parts: list[Condition] = []
        for key, key_node, value in self.mapping(node, "a condition"):
            if key in ("all", "any"):
                children = tuple(
                    self.condition(item, kinds) for item in self.sequence(value, f"{key!r}")
                )
                if not children:
                    self.fail(value, f"{key!r} needs at least one condition")
                parts.append(AllOf(children) if key == "all" else AnyOf(children))
            elif key == "not":
                parts.append(NotOf(self.condition(value, kinds)))
            else:
                path = self.path(key_node, key, kinds)
                parts.extend(self.field_tests(path, value))
        if not parts:
            self.fail(node, "an empty condition matches nothing; give a field or all/any/not")
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def path(self, node: Node, text: str, kinds: tuple[str, ...], many: bool = True) -> FieldPath:
        try:
            return resolve_path(text, kinds, allow_many=many)
        except ValueError as exc:
            hint = f" (or a combinator: {_list(_COMBINATORS)})" if many else ""
            self.fail(node, f"{exc}{hint}")

    def field_tests(self, path: FieldPath, node: Node) -> list[FieldTest]:
        line = node.start_mark.line + 1
        if isinstance(node, ScalarNode):
            value = self.scalar(node, path.text)
            self.check_value(node, path, value)
            return [FieldTest(path, Equals(value), line)]
        if isinstance(node, SequenceNode):
            self.fail(node, f"{path.text}: a list here is ambiguous; write in: [...]")
        tests = []
        for op, op_node, operand in self.mapping(node, path.text):
            if op not in OPERATORS:
                self.fail(op_node, f"{op!r} is not an operator; expected one of {_list(OPERATORS)}")
            operator = self.operator(op, path, operand)
            tests.append(FieldTest(path, operator, operand.start_mark.line + 1))
        if not tests:
            self.fail(node, f"{path.text}: give an operator, e.g. equals: …")
        return tests

    def operator(self, op: str, path: FieldPath, node: Node) -> Operator:
        if op in ("equals", "not_equals"):
            value = self.scalar(node, op)
            self.check_value(node, path, value)
            return Equals(value, negate=op == "not_equals")
        if op in ("contains", "startswith", "endswith", "regex", "domain_in", "cidr"):
            self.need(node, path, op, "str")
        if op in ("contains", "startswith", "endswith"):
            return TextMatch(op, self.string(node, op))  # type: ignore[arg-type]
        if op == "regex":
            return Regex(self.regex(node))
        if op in ("in", "domain_in"):
            return InList(self.members(node, path, op), domain=op == "domain_in")
        if op == "cidr":
            return Cidr(self.networks(node))
        value = self.scalar(node, op)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, f"{op} needs a number, not {value!r}")
        if not path.leaf.types & {"int", "float"}:
            self.fail(node, f"{op}: {path.text} is not a number ({_types(path.leaf)})")
        return Compare(op, value)  # type: ignore[arg-type]

    def need(self, node: Node, path: FieldPath, op: str, kind: str) -> None:
        if kind not in path.leaf.types:
            self.fail(node, f"{op} applies to text, and {path.text} is {_types(path.leaf)}")

    def check_value(self, node: Node, path: FieldPath, value: Scalar) -> None:
        leaf = path.leaf
        name = _type_name(value)
        compatible = name in leaf.types or (
            name in ("int", "float") and bool(leaf.types & {"int", "float"})
        )
        if not compatible:
            self.fail(node, f"{path.text} is {_types(leaf)}; {value!r} can never equal it")
        if isinstance(value, str) and leaf.literals is not None and value not in leaf.literals:
            self.fail(
                node,
                f"{value!r} is not a value of {path.text}; expected one of "
                f"{_list(sorted(leaf.literals))}",
            )

    def regex(self, node: Node) -> re.Pattern[str]:
        pattern = self.string(node, "regex")
        if len(pattern) > MAX_REGEX_LENGTH:
            self.fail(node, f"regex longer than {MAX_REGEX_LENGTH} characters")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            self.fail(node, f"regex {pattern!r} does not compile: {exc}")
        if nested_repetition(pattern):
            self.fail(
                node,
                f"regex {pattern!r} repeats a repetition (like (a+)+): it can take "
                "exponential time on some texts; write it without the nesting",
            )
        return compiled

    def list_ref(self, node: MappingNode) -> ListRef:
        items = self.mapping(node, "a list reference")
        if len(items) != 1 or items[0][0] != "list":
            self.fail(node, "a list reference is written {list: name}")
        return ListRef(self.string(items[0][2], "list"), node.start_mark.line + 1)

    def members(self, node: Node, path: FieldPath, op: str) -> frozenset[Scalar] | ListRef:
        if isinstance(node, MappingNode):
            return self.list_ref(node)
        items = self.sequence(node, op)
        if not items:
            self.fail(node, f"{op} needs at least one value")
        values = []
        for item in items:
            value = self.scalar(item, op)
            if op == "domain_in" and not isinstance(value, str):
                self.fail(item, f"domain_in: {value!r} is not a domain")
            self.check_value(item, path, value)
            values.append(value)
        return frozenset(values)

    def networks(
        self, node: Node
    ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | ListRef:
        if isinstance(node, MappingNode):
            return self.list_ref(node)
        networks = []
        for text, item in self.strings(node, "cidr"):
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                self.fail(
                    item, f"{text!r} is not an address or network (10.0.0.0/8, 2001:db8::/32)"
                )
        if not networks:
            self.fail(node, "cidr needs at least one network")
        return tuple(networks)

    # -- threshold and schedule --------------------------------------------------
    def threshold(self, node: Node, kinds: tuple[str, ...]) -> Threshold:
        fields = {
            key: (key_node, value) for key, key_node, value in self.mapping(node, "threshold")
        }
        for key, (key_node, _) in fields.items():
            if key not in ("count", "within", "by"):
                self.fail(key_node, f"{key!r} is not a threshold key; expected count, within, by")
        if "count" not in fields or "within" not in fields:
            self.fail(node, "a threshold needs count and within")
        count_node = fields["count"][1]
        count = self.scalar(count_node, "count")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
            self.fail(count_node, "count must be a whole number from 1 to 100000")
        within_node = fields["within"][1]
        try:
            within = parse_duration(str(self.scalar(within_node, "within")))
        except ValueError as exc:
            self.fail(within_node, str(exc))
        if not 0 < within <= MAX_WINDOW_US:
            self.fail(within_node, "within must be more than 0 and at most 31d")
        by: list[FieldPath] = []
        if "by" in fields:
            for text, item in self.strings(fields["by"][1], "by"):
                by.append(self.path(item, text, kinds, many=False))
        return Threshold(count, within, tuple(by))

    def schedule(self, node: Node) -> Schedule:
        fields = {key: (key_node, value) for key, key_node, value in self.mapping(node, "schedule")}
        modes = [key for key in fields if key in ("inside", "outside")]
        for key, (key_node, _) in fields.items():
            if key not in ("inside", "outside", "timezone"):
                self.fail(
                    key_node, f"{key!r} is not a schedule key; expected inside or outside, timezone"
                )
        if len(modes) != 1:
            self.fail(node, "a schedule has one of inside: or outside: (the working hours)")
        zone = ZoneInfo("UTC")
        if "timezone" in fields:
            zone_node = fields["timezone"][1]
            name = self.string(zone_node, "timezone")
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                self.fail(zone_node, f"{name!r} is not a time zone (e.g. Asia/Tokyo, UTC)")
        hours = {
            key: (key_node, value)
            for key, key_node, value in self.mapping(fields[modes[0]][1], modes[0])
        }
        for key, (key_node, _) in hours.items():
            if key not in ("days", "from", "to"):
                self.fail(
                    key_node, f"{key!r} is not a key of working hours; expected days, from, to"
                )
        if "from" not in hours or "to" not in hours:
            self.fail(fields[modes[0]][1], 'working hours need from: and to: ("08:00")')
        days = frozenset(range(7))
        if "days" in hours:
            days = self.days(hours["days"][1])
        mode: Literal["inside", "outside"] = "inside" if modes[0] == "inside" else "outside"
        return Schedule(mode, days, self.clock(hours["from"][1]), self.clock(hours["to"][1]), zone)

    def clock(self, node: Node) -> dt.time:
        # The node's own text: YAML 1.1 reads an unquoted 08:00 as the number 480.
        if not isinstance(node, ScalarNode):
            self.fail(node, 'a time of day is written "08:00"')
        found = _CLOCK.match(str(node.value).strip())
        if found is None:
            self.fail(node, f'{node.value!r} is not a time of day; write it as "08:00"')
        return dt.time(int(found.group(1)), int(found.group(2)))

    def days(self, node: Node) -> frozenset[int]:
        days: set[int] = set()
        for text, item in self.strings(node, "days"):
            bounds = re.split(r"\.\.|-", text.strip().lower())
            if len(bounds) > 2 or any(b not in _DAYS for b in bounds):
                self.fail(item, f"{text!r} is not a day or a range of days (mon, mon..fri)")
            first, last = _DAYS[bounds[0]], _DAYS[bounds[-1]]
            day = first
            while True:
                days.add(day)
                if day == last:
                    break
                day = (day + 1) % 7
        return frozenset(days)


def _severity(value: Any) -> Severity:
    for severity in SEVERITIES:
        if value == severity:
            return severity
    raise AssertionError(value)  # pragma: no cover - checked by the caller


def _type_name(value: Scalar) -> str:
    if value is None:
        return "null"
    return type(value).__name__


def _types(leaf: LeafType) -> str:
    names = {
        "str": "text",
        "int": "a number",
        "float": "a number",
        "bool": "true/false",
        "null": "null",
        "other": "another type",
    }
    return " or ".join(sorted({names[t] for t in leaf.types}))


def _shape(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "single value"


def _list(items: Any) -> str:
    return ", ".join(str(i) for i in items)
