"""Field paths: how a rule names a value of an event, checked against the payload types.

A path is either an envelope field — ``kind``, ``os_user``, ``device_id`` (or
``device.id``), ``device.group`` — or a dotted path into the payload as the collectors
send it: ``url``, ``window.application``, ``connections[*].remote_address``. A segment
ending in ``[*]`` steps into every element of a list: the test then holds when it holds
for *any* element. Getters read the payload struct's attributes (see ``EvalEvent``).

Paths are resolved once, when a rule is loaded, against the payload struct of every
kind the rule lists (``sekimori.protocol.events.EVENT_KINDS``): a misspelt field is a
load error, not a rule that silently never fires. Structs encoded as arrays (an
inventory ``Package``) are addressed by field name too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from sekimori.protocol.events import EVENT_KINDS
from sekimori.server.rules.event import EvalEvent

__all__ = ["ENVELOPE_FIELDS", "MISSING", "FieldPath", "LeafType", "resolve_path"]


class _Missing:
    """The path leads nowhere in this event (no such key, a null on the way)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

# Envelope names and the scalar type each holds.
ENVELOPE_FIELDS: Final[dict[str, str]] = {
    "kind": "str",
    "os_user": "str",
    "device_id": "str",
    "device.id": "str",
    "device.group": "str",
}

_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\[\*\])?$")


class _Each:
    def __repr__(self) -> str:
        return "[*]"


EACH: Final = _Each()
Step = str | _Each


@dataclass(frozen=True, slots=True)
class LeafType:
    """What the path leads to: scalar type names ("str", "int", "float", "bool",
    "null") and, for a Literal field, its allowed values."""

    types: frozenset[str]
    literals: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A resolved path. ``many``: it goes through a ``[*]``, so it yields several values."""

    text: str
    envelope: str | None
    steps: tuple[Step, ...]
    leaf: LeafType

    @property
    def single_key(self) -> str | None:
        """The payload key when the path is one top-level payload field."""
        if self.envelope is None and len(self.steps) == 1 and isinstance(self.steps[0], str):
            return self.steps[0]
        return None

    @property
    def many(self) -> bool:
        return any(step is EACH for step in self.steps)

    def getter(self) -> Callable[[EvalEvent], Any]:
        """A function of an event giving the value (MISSING when absent), or for a
        ``many`` path the list of values found."""
        envelope = self.envelope
        if envelope is not None:
            return _envelope_getter(envelope)
        steps = self.steps
        if len(steps) == 1 and isinstance(steps[0], str):
            key = steps[0]
            return lambda event: getattr(event.payload, key, MISSING)
        if len(steps) == 2 and isinstance(steps[0], str) and isinstance(steps[1], str):
            outer_key, inner_key = steps[0], steps[1]

            def nested(event: EvalEvent) -> Any:
                inner = getattr(event.payload, outer_key, None)
                return (
                    getattr(inner, inner_key, MISSING)
                    if isinstance(inner, msgspec.Struct)
                    else MISSING
                )

            return nested
        if len(steps) == 3 and steps[1] is EACH:
            outer, inner = steps[0], steps[2]
            if isinstance(outer, str) and isinstance(inner, str):
                return lambda event: _each_field(getattr(event.payload, outer, None), inner)
        if self.many:
            return lambda event: _walk_many(event.payload, steps)
        return lambda event: _walk_one(event.payload, steps)


def _envelope_getter(name: str) -> Callable[[EvalEvent], Any]:
    if name == "kind":
        return lambda event: event.kind
    if name == "os_user":
        return lambda event: MISSING if event.os_user is None else event.os_user
    if name in ("device_id", "device.id"):
        return lambda event: event.device_id
    return lambda event: MISSING if event.group is None else event.group


def _step(value: Any, step: str) -> Any:
    return getattr(value, step, MISSING) if isinstance(value, msgspec.Struct) else MISSING


def _each_field(items: Any, step: str) -> list[Any]:
    """``list[*].field``, the common many-path, without the general walk."""
    if not isinstance(items, list):
        return []
    return [
        v
        for item in items
        if isinstance(item, msgspec.Struct) and (v := getattr(item, step, None)) is not None
    ]


def _walk_one(value: Any, steps: Sequence[Step]) -> Any:
    for step in steps:
        if value is MISSING or value is None:
            return MISSING
        if isinstance(step, _Each):  # pragma: no cover - many paths use _walk_many
            raise AssertionError("a [*] path walked as a single value")
        value = _step(value, step)
    return value


def _walk_many(value: Any, steps: Sequence[Step]) -> list[Any]:
    current = [value]
    for step in steps:
        following: list[Any] = []
        if isinstance(step, _Each):
            for item in current:
                if isinstance(item, list):
                    following.extend(item)
        else:
            for item in current:
                found = _step(item, step)
                if found is not MISSING and found is not None:
                    following.append(found)
        current = following
    return current


def resolve_path(text: str, kinds: Iterable[str], *, allow_many: bool = True) -> FieldPath:
    """Resolve ``text`` against the payloads of ``kinds``.

    Raises ValueError with a message for the rule's author: an unknown field (and the
    fields there are), a list not stepped into with ``[*]``, a struct named as a value.
    """
    if text in ENVELOPE_FIELDS:
        return FieldPath(text, text, (), LeafType(frozenset({ENVELOPE_FIELDS[text]})))
    segments = text.split(".")
    parsed: list[tuple[str, bool]] = []
    for segment in segments:
        found = _SEGMENT.match(segment)
        if found is None:
            raise ValueError(
                f"{text!r} is not a field path (dotted names, a list stepped into "
                "with [*], e.g. connections[*].remote_address)"
            )
        parsed.append((found.group(1), found.group(2) is not None))
    if not allow_many and any(each for _, each in parsed):
        raise ValueError(f"{text!r}: [*] is not allowed here (one value per event is needed)")
    resolved: tuple[tuple[Step, ...], LeafType] | None = None
    for kind in kinds:
        info = mi.type_info(EVENT_KINDS[kind])
        steps, leaf = _resolve_in(text, parsed, info, kind)
        if resolved is not None and resolved[0] != steps:
            raise ValueError(f"{text!r} is laid out differently in the kinds listed")
        leaf = leaf if resolved is None else _merge(resolved[1], leaf)
        resolved = (steps, leaf)
    if resolved is None:
        raise ValueError("list at least one event kind before matching payload fields")
    return FieldPath(text, None, resolved[0], resolved[1])


def _merge(a: LeafType, b: LeafType) -> LeafType:
    literals = None if a.literals is None or b.literals is None else a.literals | b.literals
    return LeafType(a.types | b.types, literals)


def _resolve_in(
    text: str, parsed: list[tuple[str, bool]], info: mi.Type, kind: str
) -> tuple[tuple[Step, ...], LeafType]:
    steps: list[Step] = []
    current = info
    raw = info  # the leaf's type with its None kept (a nullable field admits null)
    for name, each in parsed:
        current = _strip_none(current)
        if not isinstance(current, mi.StructType):
            raise ValueError(f"{text!r}: the value before {name!r} has no fields (in {kind})")
        field = next((f for f in current.fields if f.encode_name == name), None)
        if field is None:
            names = ", ".join(f.encode_name for f in current.fields)
            raise ValueError(f"{kind} has no field {name!r} in {text!r}; its fields: {names}")
        steps.append(field.name)
        raw = field.type
        current = _strip_none(raw)
        if each:
            if not isinstance(current, mi.ListType):
                raise ValueError(f"{text!r}: {name!r} is not a list, so [*] does not apply")
            steps.append(EACH)
            raw = current.item_type
            current = _strip_none(raw)
        elif isinstance(current, mi.ListType):
            raise ValueError(f"{text!r}: {name!r} is a list; write {name}[*] to test its elements")
    if isinstance(current, mi.StructType):
        names = ", ".join(f.encode_name for f in current.fields)
        raise ValueError(f"{text!r} is a group of fields; name one of: {names}")
    return tuple(steps), _leaf(raw)


def _strip_none(t: mi.Type) -> mi.Type:
    if isinstance(t, mi.UnionType):
        rest = [member for member in t.types if not isinstance(member, mi.NoneType)]
        if len(rest) == 1:
            return rest[0]
    return t


def _leaf(t: mi.Type) -> LeafType:
    members = t.types if isinstance(t, mi.UnionType) else (t,)
    types: set[str] = set()
    literals: set[str] | None = None
    for member in members:
        match member:
            case mi.StrType():
                types.add("str")
            case mi.BoolType():
                types.add("bool")
            case mi.IntType():
                types.add("int")
            case mi.FloatType():
                types.add("float")
            case mi.NoneType():
                types.add("null")
            case mi.LiteralType():
                types.add("str")
                literals = (literals or set()) | {str(v) for v in member.values}
            case _:
                types.add("other")
    return LeafType(frozenset(types), None if literals is None else frozenset(literals))
