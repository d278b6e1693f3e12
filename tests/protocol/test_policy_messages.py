"""Policy push on the wire: ``policy`` / ``policy_applied`` round trips, and the policy
document checked strictly, with an error that names the field."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekimori.protocol import (
    CAPABILITY_POLICY,
    Hello,
    InvalidMessage,
    InvalidPolicy,
    PolicyApplied,
    PolicyUpdate,
    decode_agent_message,
    decode_policy_document,
    decode_server_message,
    encode_message,
    encode_policy_document,
)
from sekimori.protocol.messages import MAX_POLICY_DOCUMENT_BYTES
from sekimori.protocol.policy import (
    COLLECTOR_NAMES,
    CollectorPolicies,
    Day,
    FilesPolicy,
    NoticeMode,
    Policy,
    PrivacyPolicy,
    WorkingHours,
)

LIMIT = 4 * 1024 * 1024
DAYS: list[Day] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
clock = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)
) | st.just("24:00")
patterns = st.lists(st.text(min_size=1, max_size=40), max_size=5)


@st.composite
def working_hours(draw: st.DrawFn) -> WorkingHours:
    start = draw(clock)
    end = draw(clock.filter(lambda c: c != start))
    days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True))
    zone = draw(st.sampled_from(["UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin"]))
    return WorkingHours(days=days, start=start, end=end, timezone=zone)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Valid policies: every collector switched on or off, some settings, privacy,
    working hours and notice."""
    sections: dict[str, dict[str, Any]] = {
        name: {"enabled": draw(st.booleans())} for name in COLLECTOR_NAMES
    }
    interval = draw(st.none() | st.floats(min_value=0.01, max_value=1e6))
    if interval is not None:
        sections[draw(st.sampled_from(COLLECTOR_NAMES))]["interval_seconds"] = interval
    sections["files"]["paths"] = draw(st.none() | patterns)
    collectors = msgspec.convert(sections, CollectorPolicies)
    notice_on = draw(st.booleans())
    return Policy(
        collectors=collectors,
        privacy=PrivacyPolicy(
            record_window_titles=draw(st.booleans()),
            mask_urls_to_domain=draw(st.booleans()),
            working_hours_only=draw(st.none() | working_hours()),
        ),
        notice_mode=NoticeMode(
            enabled=notice_on,
            text_en=draw(st.text(min_size=1, max_size=50).filter(str.strip)) if notice_on else "",
            text_ja=draw(st.text(min_size=1, max_size=50).filter(str.strip)) if notice_on else "",
        ),
        excluded_applications=draw(patterns),
    )


@settings(max_examples=150)
@given(policies(), st.text(max_size=255), st.integers(0, 2**31 - 1))
def test_a_policy_round_trips_through_a_policy_frame(
    policy: Policy, group: str, version: int
) -> None:
    frame = encode_message(
        PolicyUpdate(group=group, version=version, document=encode_policy_document(policy))
    )
    message = decode_server_message(frame, LIMIT)
    assert isinstance(message, PolicyUpdate)
    assert (message.group, message.version) == (group, version)
    assert decode_policy_document(message.document) == policy


@given(st.integers(0, 2**31 - 1), st.booleans(), st.text(max_size=2000))
def test_policy_applied_round_trips(version: int, ok: bool, error: str) -> None:
    frame = encode_message(PolicyApplied(version=version, ok=ok, error=error))
    assert decode_agent_message(frame, LIMIT) == PolicyApplied(version=version, ok=ok, error=error)


def test_out_of_range_fields_are_refused_at_the_frame() -> None:
    negative = msgspec.msgpack.encode({"v": 1, "t": "policy_applied", "version": -1, "ok": True})
    with pytest.raises(InvalidMessage, match=r"\$\.version"):
        decode_agent_message(negative, LIMIT)
    long_error = encode_message(PolicyApplied(version=1, ok=False, error="x" * 2001))
    with pytest.raises(InvalidMessage, match=r"\$\.error"):
        decode_agent_message(long_error, LIMIT)
    huge = encode_message(
        PolicyUpdate(group="g", version=1, document=b" " * (MAX_POLICY_DOCUMENT_BYTES + 1))
    )
    with pytest.raises(InvalidMessage, match=r"\$\.document"):
        decode_server_message(huge, LIMIT)


def test_hello_lists_capabilities_and_an_old_hello_has_none() -> None:
    old = msgspec.msgpack.encode(
        {
            "v": 1,
            "t": "hello",
            "agent_version": "0.1",
            "hostname": "h",
            "os": "o",
            "os_version": "v",
        }
    )
    hello = decode_agent_message(old, LIMIT)
    assert isinstance(hello, Hello) and hello.capabilities == []
    new = encode_message(
        Hello(agent_version="1", hostname="h", os="o", os_version="v", capabilities=["policy"])
    )
    decoded = decode_agent_message(new, LIMIT)
    assert isinstance(decoded, Hello) and CAPABILITY_POLICY in decoded.capabilities


def _document(**changes: Any) -> bytes:
    """The default policy's JSON with ``changes`` set at dotted paths."""
    data: dict[str, Any] = msgspec.to_builtins(Policy())
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"collectors__files__interval_seconds": -1},
            "collectors.files.interval_seconds: expected `float` > 0",
        ),
        (
            {"collectors__files__paths": "/home"},
            "collectors.files.paths: expected `array | null`, got `str`",
        ),
        ({"collectors__files__program": "/bin/sh"}, "collectors.files: object contains unknown"),
        ({"run": ["rm"]}, "object contains unknown field `run`"),
        (
            {"privacy__working_hours_only": {"days": ["mon"], "from": "9:00", "to": "17:00"}},
            "privacy.working_hours_only.from: expected `str` matching",
        ),
        (
            {
                "privacy__working_hours_only": {
                    "days": ["mon"],
                    "from": "09:00",
                    "to": "17:00",
                    "timezone": "Mars/Olympus_Mons",
                }
            },
            "privacy.working_hours_only.timezone: time zone 'Mars/Olympus_Mons' is not known",
        ),
        (
            {"privacy__working_hours_only": {"days": ["mon"], "from": "09:00", "to": "09:00"}},
            "privacy.working_hours_only.to: must differ",
        ),
        (
            {"privacy__working_hours_only": {"days": ["mon", "mon"], "from": "9", "to": "1"}},
            "privacy.working_hours_only.from",
        ),
        (
            {"notice_mode__enabled": True, "notice_mode__text_en": "Monitored."},
            "notice_mode: a notice needs its text in English and Japanese",
        ),
    ],
)
def test_bad_policies_are_refused_naming_the_field(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        decode_policy_document(_document(**changes))
    assert str(caught.value).startswith(expected), str(caught.value)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"", "not a JSON policy document"),
        (b"{", "not a JSON policy document"),
        (b"[]", "expected `object`, got `array`"),
        (b"\xff\xfe", "not a JSON policy document"),
        (b" " * (MAX_POLICY_DOCUMENT_BYTES + 1), "a policy document is at most"),
    ],
)
def test_documents_that_are_no_policy_at_all(document: bytes, expected: str) -> None:
    with pytest.raises(InvalidPolicy, match=expected):
        decode_policy_document(document)


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=15,
)
FIELD_PATHS = [
    "collectors",
    "collectors__files",
    "collectors__files__paths",
    "collectors__window__record_titles",
    "privacy",
    "privacy__working_hours_only",
    "notice_mode",
    "notice_mode__enabled",
    "excluded_domains",
    "retention_days__web",
]


@settings(max_examples=300)
@given(st.sampled_from(FIELD_PATHS), json_values)
def test_any_change_to_a_document_gives_a_policy_or_a_clear_error(path: str, value: Any) -> None:
    try:
        document = _document(**{path: value})
    except TypeError:  # a parent replaced by a scalar earlier in the path: not a case
        return
    try:
        policy = decode_policy_document(document)
    except InvalidPolicy as exc:
        # The error is a sentence, and names a field when one is at fault.
        assert str(exc) and "Traceback" not in str(exc)
        assert exc.path == "" or str(exc).startswith(exc.path + ": ")
        return
    assert isinstance(policy, Policy)
    assert decode_policy_document(encode_policy_document(policy)) == policy


@settings(max_examples=200)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_give_a_policy_or_invalid_policy_only(document: bytes) -> None:
    with contextlib.suppress(InvalidPolicy):
        decode_policy_document(document)


def test_the_policy_file_setting_is_a_list_of_patterns_not_a_program() -> None:
    # The field a reviewer might worry about: it names what to watch, nothing to run.
    policy = decode_policy_document(_document(collectors__files__paths=["/srv/share"]))
    assert policy.collectors.files == FilesPolicy(paths=["/srv/share"])
