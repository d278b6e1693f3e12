"""Validating a policy the console submits, and describing what a new version changes.

``validate_policy`` turns the console's JSON (or a file's) into a typed
``sekimori.protocol.policy.Policy`` or raises ``PolicyError`` naming the exact field
(``collectors.files.interval_seconds: must be positive``); ``diff_policies`` lists
the changed leaves for the console's "what changes" view and for the audit entry
that ``store.policies.save_policy`` writes. Wiring (next session): the console's
policy editor calls ``validate_policy`` then ``save_policy``; the channel sends the
saved policy to the group's agents.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

import msgspec

from sekimori.protocol.policy import Policy

__all__ = ["Change", "PolicyError", "diff_policies", "policy_from_json", "validate_policy"]

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_POSITIVE = re.compile(r"^Expected `(?:int|float)` > 0(?:\.0)?$")


class PolicyError(ValueError):
    """The policy is invalid. ``path`` is the dotted field path ("" for the whole
    document), ``message`` what is wrong with it; ``str()`` shows both."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def validate_policy(data: object) -> Policy:
    """The typed policy for ``data`` (a decoded JSON object).

    Raises PolicyError (and nothing else) for any other input.
    """
    if not isinstance(data, dict):
        raise PolicyError("", "a policy is a JSON object")
    try:
        policy = msgspec.convert(data, Policy)
    except msgspec.ValidationError as exc:
        raise _from_msgspec(str(exc)) from None
    _check_semantics(policy)
    return policy


def policy_from_json(text: str | bytes) -> Policy:
    """``validate_policy`` of a JSON text; a syntax error is a PolicyError too."""
    try:
        data = msgspec.json.decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise PolicyError("", f"not valid JSON: {exc}") from None
    return validate_policy(data)


def _from_msgspec(text: str) -> PolicyError:
    match = _AT.match(text)
    message, path = (match["message"], match["path"] or "") if match else (text, "")
    if _POSITIVE.match(message):
        message = "must be positive"
    elif message.startswith("Object contains unknown field"):
        # msgspec names the field in the message; point the path at it.
        name = message.split("`")[1] if "`" in message else ""
        path = f"{path}.{name}" if name else path
        message = "unknown field"
    else:
        message = message[:1].lower() + message[1:]
    return PolicyError(path.lstrip("."), message)


def _check_semantics(policy: Policy) -> None:
    """What the types cannot say."""
    hours = policy.privacy.working_hours_only
    if hours is not None:
        where = "privacy.working_hours_only"
        try:
            zoneinfo.ZoneInfo(hours.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise PolicyError(f"{where}.timezone", "not a known IANA time zone") from None
        if hours.start == hours.end:
            raise PolicyError(f"{where}.to", "must differ from `from`")
        if len(set(hours.days)) != len(hours.days):
            raise PolicyError(f"{where}.days", "lists a day twice")
    for index, domain in enumerate(policy.excluded_domains):
        if not _is_domain(domain):
            raise PolicyError(f"excluded_domains[{index}]", f"not a domain name: {domain!r}")
    notice = policy.notice_mode
    if notice.enabled and not (notice.text_en.strip() and notice.text_ja.strip()):
        raise PolicyError("notice_mode", "a notice needs its text in English and Japanese")


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _is_domain(name: str) -> bool:
    labels = name.lower().rstrip(".").split(".")
    return len(name) <= 253 and all(_LABEL.match(label) for label in labels)


@dataclass(frozen=True, slots=True)
class Change:
    """One changed setting: its dotted path and the values before and after (``None``
    for a setting left to the agent, or absent)."""

    path: str
    old: Any
    new: Any


def diff_policies(old: Policy | None, new: Policy) -> list[Change]:
    """The settings that differ, in path order (``old=None``: against the default
    policy, i.e. a group's first policy). Lists compare as whole values."""
    before = _leaves(msgspec.to_builtins(old if old is not None else Policy()))
    after = _leaves(msgspec.to_builtins(new))
    return [
        Change(path, before.get(path), after.get(path))
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    ]


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            out.update(_leaves(child, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}
