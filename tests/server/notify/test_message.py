"""The alert message: validation, the two languages, and one-line header values."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.server.notify import AlertMessage, NotifyConfigError, Severity
from sekimori.server.notify.message import STRINGS, one_line
from tests.server.notify.conftest import make_alert


def test_both_languages_have_the_same_strings() -> None:
    assert STRINGS["en"].keys() == STRINGS["ja"].keys()


def test_subjects_in_english_and_japanese() -> None:
    assert make_alert(count=1).subject == (
        "[Sekimori] High: USB mass-storage device attached on pc-0042"
    )
    assert make_alert(locale="ja", severity=Severity.CRITICAL).subject == (
        "[Sekimori] 緊急: pc-0042 で USB mass-storage device attached（3 回）"
    )


def test_long_summaries_are_cut_with_a_count() -> None:
    message = make_alert(summary=tuple(f"event {i}" for i in range(15)), more_events=100)
    lines = message.event_lines()
    assert lines[:2] == ["event 0", "event 1"] and len(lines) == 11
    assert lines[-1] == "… and 105 more events"


def test_severities_are_ordered() -> None:
    ranks = [s.rank for s in Severity]
    assert ranks == sorted(ranks) and Severity.CRITICAL.rank > Severity.INFO.rank


@pytest.mark.parametrize(
    ("changes", "start"),
    [
        ({"count": 0}, "count:"),
        ({"last_seen_us": 0}, "last_seen_us:"),
        ({"console_url": "javascript:alert(1)"}, "console_url:"),
        ({"console_url": "https://x.example/\r\nBcc: y"}, "console_url:"),
        ({"rule_title": "  "}, "rule_id, rule_title:"),
    ],
)
def test_bad_values_name_the_field(changes: dict[str, Any], start: str) -> None:
    with pytest.raises(NotifyConfigError) as caught:
        make_alert(**changes)
    assert str(caught.value).startswith(start)


def test_a_message_decodes_from_plain_data() -> None:
    data = msgspec.to_builtins(make_alert())
    assert msgspec.convert(data, AlertMessage) == make_alert()
    with pytest.raises(msgspec.ValidationError, match="count"):
        msgspec.convert({**data, "count": 0}, AlertMessage)


@given(st.text(), st.integers(2, 400))
def test_one_line_never_keeps_a_line_break_and_respects_the_limit(text: str, limit: int) -> None:
    line = one_line(text, limit)
    assert len(line) <= limit
    assert not any(ch in line for ch in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00")
    assert line == line.strip()


@given(st.text(), st.text(), st.text())
def test_any_hostname_or_title_gives_a_one_line_subject(host: str, title: str, rule: str) -> None:
    message = make_alert(hostname=host, rule_title=title + "x", rule_id=rule + "r")
    assert "\n" not in message.subject and "\r" not in message.subject
    assert "\n" not in "".join(value for _, value in message.facts())
