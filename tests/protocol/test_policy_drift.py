"""The protocol's per-collector policy schemas and the agent's settings classes must
agree: a field the policy sets exists in the agent's class with the same type, and
every agent field the policy leaves out is listed here with the reason."""

from __future__ import annotations

import msgspec
import msgspec.inspect as mi
import pytest

from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.protocol.policy import COLLECTOR_NAMES, CollectorPolicies, Policy, collector_overrides

# Machine-local settings: where things are on this PC, not what to record. A server
# that could set them could point a collector at any file (see protocol/policy.py).
LOCAL_ONLY: dict[str, set[str]] = {
    "inventory": {"pypi_paths", "npm_paths"},
    "processes": set(),
    "network": set(),
    "web": {"home_roots", "homes"},
    "files": {"removable_paths", "state_dir"},
    "window": {"display", "xauthority"},
    "devices": {"usb_root", "mountinfo", "sys_root", "media_roots"},
    "sessions": {"utmp_path", "boot_id_path", "stat_path"},
    "printing": {"page_log_path", "page_log_format", "cupsd_path"},
    "screens": {"display", "xauthority"},
}


def _shape(t: mi.Type) -> object:
    """A type without its constraints or optionality: what must agree."""
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        return _shape(members[0]) if len(members) == 1 else tuple(map(_shape, members))
    if isinstance(t, mi.ListType):
        return ("list", _shape(t.item_type))
    if isinstance(t, mi.LiteralType):
        return ("literal", frozenset(t.values))
    return type(t).__name__


def _fields(cls: type) -> dict[str, mi.Type]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return {f.name: f.type for f in info.fields}


@pytest.mark.parametrize("name", COLLECTOR_NAMES)
def test_policy_schema_matches_the_agent_settings(name: str) -> None:
    agent = _fields(COLLECTORS[name].settings_type)
    policy = _fields(type(getattr(CollectorPolicies(), name)))
    assert set(policy) | LOCAL_ONLY[name] == set(agent), "a field was added or removed"
    assert not set(policy) & LOCAL_ONLY[name]
    for field, ftype in policy.items():
        assert _shape(ftype) == _shape(agent[field]), field


@pytest.mark.parametrize("name", COLLECTOR_NAMES)
def test_the_agent_accepts_a_full_policy_section(name: str) -> None:
    section = type(getattr(CollectorPolicies(), name))
    sample = {}
    for field, ftype in _fields(section).items():
        sample[field] = _sample(ftype)
    policy = msgspec.convert({"collectors": {name: sample}}, Policy)
    settings = msgspec.convert(collector_overrides(policy, name), COLLECTORS[name].settings_type)
    assert settings.enabled is sample["enabled"]


def _sample(t: mi.Type) -> object:
    if isinstance(t, mi.UnionType):
        return _sample(next(m for m in t.types if not isinstance(m, mi.NoneType)))
    if isinstance(t, mi.BoolType):
        return False
    if isinstance(t, mi.IntType):
        value = max(t.ge or 1, 64)
        return value if t.le is None else min(value, t.le)
    if isinstance(t, mi.FloatType):
        return 2.5 if t.le is None else min(2.5, t.le)
    if isinstance(t, mi.ListType):
        return [_sample(t.item_type)]
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.StrType):
        return "*.tmp"
    raise AssertionError(f"unexpected type {t}")
