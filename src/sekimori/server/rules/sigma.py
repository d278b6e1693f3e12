"""Sigma rules (the community's detection format) on ``process.started`` events.

pySigma parses the rule — its detections, value modifiers (contains, startswith,
endswith, all, re, windash, cased …) and condition expression (``selection and not
filter``, ``1 of selection_*``, ``all of them``) — into a condition tree; this module
walks that tree (``rule.detection.parsed_condition[i].parse()``) and compiles it into
a function of our events. Only ``logsource: category: process_creation`` is accepted.

Sigma's field names (Sysmon's) map to ``process.started`` payload fields:

    Image            exe
    CommandLine      " ".join(argv) (exe when argv is empty)
    User             user
    ProcessId        pid
    ParentProcessId  ppid

Any other field (ParentImage, ParentCommandLine, OriginalFileName, Product, Hashes,
CurrentDirectory, IntegrityLevel …) is not in our events. Such a test is *unknown*,
evaluated with three-valued logic: ``unknown and x`` is unknown, ``not unknown`` is
unknown, ``true or unknown`` is true, and a rule fires only when its condition is
true. So a selection that needs ParentImage never fires, and neither does ``selection
and not filter_parent`` — a filter we cannot check never lets an alert through that
the rule's author meant to suppress. ``SigmaImport.unsupported_fields`` lists them, and
a rule with no supported field at all is refused.

Sigma strings match case-insensitively (``|cased`` makes them case-sensitive); ``re``
patterns are Python regexes, limited to 512 characters like ours (ReDoS).

Wiring (next session): imported rules are ``Rule`` objects like those of the YAML
language, so they go into the same ``RuleSet`` and reach the same alerts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import yaml
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from sekimori.protocol.events import Payload
from sekimori.server.rules.conditions import ListRef, NamedLists, Predicate
from sekimori.server.rules.errors import SigmaImportError
from sekimori.server.rules.event import EvalEvent
from sekimori.server.rules.language import MAX_REGEX_LENGTH, MAX_RULE_FILE_BYTES
from sekimori.server.rules.model import Rule, Severity
from sekimori.server.rules.regex_safety import nested_repetition

__all__ = ["SIGMA_FIELDS", "SigmaImport", "SigmaMatch", "import_sigma", "import_sigma_rules"]

# True, False, or None: unknown (a field our events do not have).
TriState = bool | None
_Node = Callable[[Payload], TriState]


def _command_line(payload: Payload) -> Any:
    argv = getattr(payload, "argv", None)
    if isinstance(argv, list) and argv:
        return " ".join(str(a) for a in argv)
    return getattr(payload, "exe", None)


SIGMA_FIELDS: Final[dict[str, Callable[[Payload], Any]]] = {
    "Image": lambda p: getattr(p, "exe", None),
    "CommandLine": _command_line,
    "User": lambda p: getattr(p, "user", None),
    "ProcessId": lambda p: getattr(p, "pid", None),
    "ParentProcessId": lambda p: getattr(p, "ppid", None),
}
SIGMA_KIND: Final = "process.started"
_LEVELS: Final[dict[str, Severity]] = {
    "informational": "info",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}


@dataclass(frozen=True, slots=True, eq=False)
class SigmaMatch:
    """A Sigma detection as a rule condition (the ``Condition`` protocol)."""

    evaluate: _Node

    def compile(self, lists: NamedLists, rule_id: str, source: str) -> Predicate:
        evaluate = self.evaluate
        return lambda event: evaluate(event.payload) is True

    def list_refs(self) -> Iterator[ListRef]:
        return iter(())

    def tri_state(self, event: EvalEvent) -> TriState:
        """True, False, or None when it depends on fields our events lack."""
        return self.evaluate(event.payload)


@dataclass(frozen=True, slots=True)
class SigmaImport:
    """An imported Sigma rule: ``rule`` for a RuleSet, the Sigma id and author, and
    the fields whose tests are unknown (so conditions needing them do not fire)."""

    rule: Rule
    sigma_id: str | None
    author: str | None
    unsupported_fields: tuple[str, ...]


def import_sigma(text: str, source: str = "<sigma>", *, enabled: bool = True) -> SigmaImport:
    """Import one Sigma rule (one YAML document). Raises SigmaImportError."""
    _check_size(text, source)
    try:
        sigma_rule = SigmaRule.from_yaml(text)
    except (SigmaError, yaml.YAMLError) as exc:
        raise SigmaImportError(f"{source}: not a valid Sigma rule: {exc}") from None
    return _convert(sigma_rule, source, enabled)


def import_sigma_rules(text: str, source: str = "<sigma>") -> list[SigmaImport]:
    """Import every rule of a multi-document YAML file (documents split by ``---``)."""
    _check_size(text, source)
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SigmaImportError(f"{source}: not valid YAML: {exc}") from None
    imports = []
    for index, document in enumerate(documents, 1):
        if not isinstance(document, dict):
            raise SigmaImportError(f"{source} document {index}: not a Sigma rule (a mapping)")
        try:
            sigma_rule = SigmaRule.from_dict(document)
        except SigmaError as exc:
            raise SigmaImportError(f"{source} document {index}: {exc}") from None
        imports.append(_convert(sigma_rule, f"{source} document {index}", True))
    return imports


def _check_size(text: str, source: str) -> None:
    if len(text) > MAX_RULE_FILE_BYTES:
        raise SigmaImportError(f"{source}: larger than {MAX_RULE_FILE_BYTES} bytes")


def _convert(sigma_rule: SigmaRule, source: str, enabled: bool) -> SigmaImport:
    category = sigma_rule.logsource.category
    if category != "process_creation":
        raise SigmaImportError(
            f"{source}: logsource category {category!r} is not supported; only "
            "process_creation rules can be evaluated (on process.started events)"
        )
    compiler = _Compiler(source)
    try:
        branches = [
            compiler.node(condition.parse()) for condition in sigma_rule.detection.parsed_condition
        ]
    except SigmaError as exc:
        raise SigmaImportError(f"{source}: {exc}") from None
    if not compiler.supported:
        raise SigmaImportError(
            f"{source}: the rule tests only fields our process events do not have "
            f"({', '.join(sorted(compiler.unsupported))}); it could never fire"
        )
    evaluate = branches[0] if len(branches) == 1 else _or(branches)
    sigma_id = str(sigma_rule.id) if sigma_rule.id else None
    level = str(sigma_rule.level).lower() if sigma_rule.level else "medium"
    rule = Rule(
        id=f"sigma.{sigma_id}" if sigma_id else "sigma." + _slug(sigma_rule.title),
        title=sigma_rule.title,
        description=sigma_rule.description or "",
        severity=_LEVELS.get(level, "medium"),
        enabled=enabled,
        kinds=(SIGMA_KIND,),
        match=SigmaMatch(evaluate),
        source=source,
    )
    return SigmaImport(rule, sigma_id, sigma_rule.author, tuple(sorted(compiler.unsupported)))


def _slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", title).strip("_")[:100] or "untitled"


class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source
        self.supported: set[str] = set()
        self.unsupported: set[str] = set()

    def node(self, item: Any) -> _Node:
        if isinstance(item, ConditionAND):
            return _and([self.node(a) for a in item.args])
        if isinstance(item, ConditionOR):
            return _or([self.node(a) for a in item.args])
        if isinstance(item, ConditionNOT):
            return _not(self.node(item.args[0]))
        if isinstance(item, ConditionFieldEqualsValueExpression):
            return self.field(item.field, item.value)
        if isinstance(item, ConditionValueExpression):
            # Keywords are a full-text search in Sigma: a substring of the command line.
            self.supported.add("CommandLine")
            value = item.value
            if isinstance(value, SigmaString) and not value.contains_special():
                multi = SpecialChars.WILDCARD_MULTI
                value = multi + value + multi
            test = self.value(value)
            return lambda p: _apply(test, _command_line(p))
        if item is None:  # an empty detection (pySigma drops nothing here, but may)
            return lambda p: False
        if isinstance(item, ConditionItem):
            raise SigmaImportError(f"{self.source}: condition {type(item).__name__} not supported")
        raise SigmaImportError(f"{self.source}: unexpected condition {item!r}")

    def field(self, name: str, value: SigmaType) -> _Node:
        getter = SIGMA_FIELDS.get(name)
        if getter is None:
            self.unsupported.add(name)
            return lambda p: None
        self.supported.add(name)
        if isinstance(value, SigmaExists):
            exists = bool(value)
            return lambda p: (getter(p) is not None) == exists
        test = self.value(value)
        return lambda p: _apply(test, getter(p))

    def value(self, value: SigmaType) -> Callable[[Any], bool]:
        if isinstance(value, SigmaExpansion):
            tests = [self.value(v) for v in value.values]
            return lambda v: any(t(v) for t in tests)
        if isinstance(value, SigmaString):
            return _string_test(value, cased=isinstance(value, SigmaCasedString))
        if isinstance(value, SigmaRegularExpression):
            return self.regex(value)
        if isinstance(value, SigmaNumber):
            number = value.number
            return lambda v: (not isinstance(v, bool) and v == number) or str(v) == str(number)
        if isinstance(value, SigmaNull):
            return lambda v: v is None or v == ""
        if isinstance(value, SigmaCompareExpression):
            return _compare(value)
        if isinstance(value, SigmaCIDRExpression):
            network = value.network
            return lambda v: _in_network(v, network)
        raise SigmaImportError(
            f"{self.source}: values of type {type(value).__name__} (its modifier) are not supported"
        )

    def regex(self, value: SigmaRegularExpression) -> Callable[[Any], bool]:
        pattern = str(value.regexp)
        if len(pattern) > MAX_REGEX_LENGTH:
            raise SigmaImportError(
                f"{self.source}: regular expression longer than {MAX_REGEX_LENGTH} characters"
            )
        flags = 0
        for flag in value.flags:
            flags |= {
                SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
                SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
                SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
            }[flag]
        try:
            search = re.compile(pattern, flags).search
        except re.error as exc:
            raise SigmaImportError(f"{self.source}: regex {pattern!r}: {exc}") from None
        if nested_repetition(pattern, flags):
            raise SigmaImportError(
                f"{self.source}: regex {pattern!r} repeats a repetition (like (a+)+): it "
                "can take exponential time on some texts, so it is not imported"
            )
        return lambda v: isinstance(v, str) and search(v) is not None


def _apply(test: Callable[[Any], bool], value: Any) -> TriState:
    return value is not None and test(value)


def _and(nodes: list[_Node]) -> _Node:
    def evaluate(p: Payload) -> TriState:
        result: TriState = True
        for node in nodes:
            r = node(p)
            if r is False:
                return False
            if r is None:
                result = None
        return result

    return evaluate


def _or(nodes: list[_Node]) -> _Node:
    def evaluate(p: Payload) -> TriState:
        result: TriState = False
        for node in nodes:
            r = node(p)
            if r is True:
                return True
            if r is None:
                result = None
        return result

    return evaluate


def _not(node: _Node) -> _Node:
    def evaluate(p: Payload) -> TriState:
        r = node(p)
        return None if r is None else not r

    return evaluate


def _string_test(value: SigmaString, *, cased: bool) -> Callable[[Any], bool]:
    parts = list(value.s)
    plain = all(isinstance(p, str) for p in parts)
    middle = parts[1:-1]
    fold: Callable[[str], str] = (lambda s: s) if cased else str.lower
    if plain:
        text = fold("".join(str(p) for p in parts))
        return lambda v: isinstance(v, str) and fold(v) == text
    multi = SpecialChars.WILDCARD_MULTI
    if all(isinstance(p, str) for p in middle) and len(parts) >= 2:
        starts, ends = parts[0] == multi, parts[-1] == multi
        core = fold("".join(str(p) for p in parts if isinstance(p, str)))
        if starts and ends and len(parts) == 3:
            return lambda v: isinstance(v, str) and core in fold(v)
        if starts and len(parts) == 2:
            return lambda v: isinstance(v, str) and fold(v).endswith(core)
        if ends and len(parts) == 2:
            return lambda v: isinstance(v, str) and fold(v).startswith(core)
    regex = []
    for part in parts:
        if part == multi:
            regex.append(".*")
        elif part == SpecialChars.WILDCARD_SINGLE:
            regex.append(".")
        elif isinstance(part, str):
            regex.append(re.escape(part))
        else:
            raise SigmaImportError(f"placeholder {part!r} in a value is not supported")
    flags = re.DOTALL | (0 if cased else re.IGNORECASE)
    fullmatch = re.compile("".join(regex), flags).fullmatch
    return lambda v: isinstance(v, str) and fullmatch(v) is not None


def _compare(value: SigmaCompareExpression) -> Callable[[Any], bool]:
    number = value.number.number
    op = value.op

    def test(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        if op == CompareOperators.LT:
            return bool(v < number)
        if op == CompareOperators.LTE:
            return bool(v <= number)
        if op == CompareOperators.GT:
            return bool(v > number)
        return bool(v >= number)

    return test


def _in_network(value: Any, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value) in network
    except ValueError:
        return False
