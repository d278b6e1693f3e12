"""validate_policy: typed errors naming the field; diff_policies: what changes."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekimori.protocol.policy import Policy
from sekimori.server.policies import (
    Change,
    PolicyError,
    diff_policies,
    policy_from_json,
    validate_policy,
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"collectors": {"files": {"interval_seconds": 0}}},
            "collectors.files.interval_seconds: must be positive",
        ),
        (
            {"collectors": {"files": {"interval_seconds": "often"}}},
            "collectors.files.interval_seconds: expected `float | null`, got `str`",
        ),
        ({"collectors": {"files": {"run": "rm -rf /"}}}, "collectors.files.run: unknown field"),
        ({"collectors": {"keylogger": {}}}, "collectors.keylogger: unknown field"),
        ({"execute": "id"}, "execute: unknown field"),
        ({"retention_days": {"web": 0}}, "retention_days.web: expected `int` >= 1"),
        ({"retention_days": {"web": 3651}}, "retention_days.web: expected `int` <= 3650"),
        ({"retention_days": {"mail": 3}}, "retention_days.mail: unknown field"),
        ({"excluded_domains": ["ok.example", 3]}, "excluded_domains[1]: expected `str`, got `int`"),
        ({"excluded_domains": ["not a domain"]}, "excluded_domains[0]: not a domain name"),
        (
            {"privacy": {"working_hours_only": {"days": [], "from": "08:00", "to": "18:00"}}},
            "privacy.working_hours_only.days: expected `array` of length >= 1",
        ),
        (
            {"privacy": {"working_hours_only": {"days": ["mon"], "from": "8:00", "to": "18:00"}}},
            "privacy.working_hours_only.from: expected `str` matching regex",
        ),
        (
            {
                "privacy": {
                    "working_hours_only": {
                        "days": ["mon"],
                        "from": "08:00",
                        "to": "18:00",
                        "timezone": "Mars/Olympus",
                    }
                }
            },
            "privacy.working_hours_only.timezone: not a known IANA time zone",
        ),
        (
            {"privacy": {"working_hours_only": {"days": ["mon"], "from": "08:00", "to": "08:00"}}},
            "privacy.working_hours_only.to: must differ from `from`",
        ),
        ({"notice_mode": {"enabled": True, "text_en": "watched"}}, "notice_mode: a notice needs"),
        ([], "a policy is a JSON object"),
    ],
)
def test_errors_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        validate_policy(data)
    assert str(caught.value).startswith(message)


def test_error_carries_path_and_message() -> None:
    with pytest.raises(PolicyError) as caught:
        validate_policy({"collectors": {"processes": {"max_argv_bytes": 10}}})
    assert caught.value.path == "collectors.processes.max_argv_bytes"
    assert caught.value.message == "expected `int` >= 64"


def test_a_full_policy_validates() -> None:
    policy = policy_from_json(
        """{
          "collectors": {"files": {"paths": ["/srv/share"], "interval_seconds": 2},
                         "printing": {"enabled": false}},
          "privacy": {"record_window_titles": false, "mask_urls_to_domain": true,
                      "working_hours_only": {"days": ["mon", "tue"], "from": "08:00",
                                             "to": "20:00", "timezone": "Asia/Tokyo"}},
          "notice_mode": {"enabled": true, "text_en": "This PC is monitored.",
                          "text_ja": "このPCは監視されています。"},
          "excluded_applications": ["keepassxc"],
          "excluded_domains": ["bank.example.co.jp"],
          "retention_days": {"web": 90, "window": 30, "file": null}
        }"""
    )
    assert policy.collectors.files.interval_seconds == 2.0
    assert policy.collectors.printing.enabled is False
    assert policy.retention_days.as_dict() == {"web": 90, "window": 30}


def test_bad_json_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="not valid JSON"):
        policy_from_json("{")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "collectors",
                    "files",
                    "window",
                    "interval_seconds",
                    "paths",
                    "enabled",
                    "privacy",
                    "working_hours_only",
                    "days",
                    "from",
                    "to",
                    "timezone",
                    "retention_days",
                    "web",
                    "excluded_domains",
                    "notice_mode",
                    "text_en",
                ]
            )
            | st.text(max_size=6),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_arbitrary_json_never_crashes(data: Any) -> None:
    try:
        assert isinstance(validate_policy(data), Policy)
    except PolicyError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    with contextlib.suppress(PolicyError):
        policy_from_json(raw)


def test_diff_lists_changed_leaves() -> None:
    old = validate_policy({"collectors": {"web": {"enabled": True}}, "retention_days": {"web": 30}})
    new = validate_policy(
        {
            "collectors": {"web": {"enabled": False}},
            "retention_days": {"web": 60},
            "excluded_domains": ["a.example"],
        }
    )
    assert diff_policies(old, new) == [
        Change("collectors.web.enabled", True, False),
        Change("excluded_domains", [], ["a.example"]),
        Change("retention_days.web", 30, 60),
    ]
    assert diff_policies(new, new) == []


def test_diff_against_nothing_is_against_the_default() -> None:
    new = validate_policy({"privacy": {"record_window_titles": False}})
    assert diff_policies(None, new) == [Change("privacy.record_window_titles", True, False)]
    assert diff_policies(None, Policy()) == []
