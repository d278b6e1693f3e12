"""The policy model: only collection settings, and the merge the agent will apply."""

from __future__ import annotations

import typing

import msgspec
import msgspec.inspect as mi

from sekimori.protocol.events import EVENT_KINDS
from sekimori.protocol.policy import (
    COLLECTOR_NAMES,
    RETENTION_DOMAINS,
    NoticeMode,
    Policy,
    PrivacyPolicy,
    RetentionPolicy,
    WorkingHours,
    collector_overrides,
)

# Every field a policy has, by dotted path. Adding one is a deliberate act: the test
# below also proves no field's type could carry a command or arbitrary data.
EXPECTED_TOP = {
    "collectors",
    "privacy",
    "notice_mode",
    "excluded_applications",
    "excluded_domains",
    "retention_days",
    "live_view",
}
FORBIDDEN_WORDS = {
    "action",
    "actions",
    "argv",
    "cmd",
    "command",
    "commands",
    "exec",
    "program",
    "run",
    "script",
    "scripts",
    "shell",
}


def _walk(t: mi.Type, path: str, out: dict[str, mi.Type]) -> None:
    if isinstance(t, mi.StructType):
        for field in t.fields:
            _walk(field.type, f"{path}.{field.encode_name}" if path else field.encode_name, out)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            _walk(member, path, out)
    else:
        out.setdefault(path, t)
        if isinstance(t, mi.ListType):
            _walk(t.item_type, path + "[]", out)


def test_a_policy_has_only_the_listed_fields() -> None:
    assert set(Policy.__struct_fields__) == EXPECTED_TOP


def test_no_field_could_carry_a_command() -> None:
    leaves: dict[str, mi.Type] = {}
    _walk(mi.type_info(Policy), "", leaves)
    allowed = (mi.BoolType, mi.IntType, mi.FloatType, mi.StrType, mi.LiteralType, mi.NoneType)
    for path, leaf in leaves.items():
        name = path.rsplit(".", 1)[-1]
        if isinstance(leaf, (mi.StrType, mi.ListType)):
            # Text named like a command is refused (a number such as
            # command_timeout_seconds cannot carry one).
            assert not FORBIDDEN_WORDS & set(name.strip("[]").split("_")), path
        if isinstance(leaf, mi.ListType):
            continue  # its items are walked as path[]
        # No Any, no dicts of arbitrary keys, no bytes: a bounded scalar or a choice.
        assert isinstance(leaf, allowed), (path, leaf)
        if isinstance(leaf, mi.StrType) and not path.startswith("notice_mode."):
            assert leaf.max_length is not None or leaf.pattern is not None, path


def test_collector_sections_match_the_registry_names() -> None:
    from sekimori.agent.collectors.registry import COLLECTORS

    assert set(COLLECTOR_NAMES) == set(COLLECTORS)


def test_retention_domains_are_the_event_kind_domains() -> None:
    assert set(RETENTION_DOMAINS) == {kind.partition(".")[0] for kind in EVENT_KINDS}


def test_round_trip_through_json() -> None:
    policy = msgspec.convert(
        {
            "collectors": {"files": {"enabled": False, "paths": ["/srv/share"]}},
            "privacy": {
                "record_window_titles": False,
                "working_hours_only": {
                    "days": ["mon", "fri"],
                    "from": "08:00",
                    "to": "18:30",
                    "timezone": "Asia/Tokyo",
                },
            },
            "retention_days": {"web": 30},
        },
        Policy,
    )
    again = msgspec.json.decode(msgspec.json.encode(policy), type=Policy)
    assert again == policy
    assert again.privacy.working_hours_only == WorkingHours(
        days=["mon", "fri"], start="08:00", end="18:30", timezone="Asia/Tokyo"
    )
    assert again.retention_days.as_dict() == {"web": 30}


def test_overrides_carry_only_what_the_policy_sets() -> None:
    assert collector_overrides(Policy(), "files") == {"enabled": True}
    assert collector_overrides(Policy(), "window") == {"enabled": True}
    policy = msgspec.convert({"collectors": {"processes": {"interval_seconds": 2}}}, Policy)
    assert collector_overrides(policy, "processes") == {"enabled": True, "interval_seconds": 2.0}


def test_privacy_and_exclusions_fold_into_their_collectors() -> None:
    policy = Policy(
        privacy=PrivacyPolicy(record_window_titles=False, mask_urls_to_domain=True),
        excluded_applications=["keepassxc"],
        excluded_domains=["bank.example"],
        notice_mode=NoticeMode(enabled=True, text_en="x", text_ja="y"),
        retention_days=RetentionPolicy(),
    )
    policy.collectors.window.record_titles = True  # the stricter privacy option wins
    policy.collectors.web.exclude_domains = ["mail.example"]
    window = collector_overrides(policy, "window")
    assert window["record_titles"] is False
    assert window["exclude_applications"] == ["keepassxc"]
    web = collector_overrides(policy, "web")
    assert web["mask_urls_to_domain"] is True
    assert web["exclude_domains"] == ["mail.example", "bank.example"]
    assert collector_overrides(policy, "processes")["exclude_executables"] == ["*/keepassxc"]
    assert "exclude_executables" not in collector_overrides(Policy(), "network")


def test_unknown_collector_name() -> None:
    try:
        collector_overrides(Policy(), "keylogger")
    except KeyError:
        pass
    else:
        raise AssertionError("expected KeyError")
    assert typing.get_type_hints(Policy)  # the annotations resolve (no forward refs left)
