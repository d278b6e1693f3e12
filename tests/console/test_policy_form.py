"""The policy editor's form, without a server: any policy shown in the form comes
back unchanged when submitted as shown (hypothesis), and any advanced text either
yields a policy or a PolicyError placed on the form — never another exception."""

from __future__ import annotations

from typing import Any

import msgspec
import yaml
from hypothesis import given
from hypothesis import strategies as st

from sekimori.protocol.policy import COLLECTOR_NAMES, RETENTION_DOMAINS, Policy
from sekimori.server.console.policy_changes import describe_changes
from sekimori.server.console.policy_form import (
    field_error,
    form_from_policy,
    policy_document,
)
from sekimori.server.policies import Change, PolicyError, diff_policies, validate_policy

# One line of a textarea: what the form keeps of it is the stripped text.
_line = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=30,
).filter(lambda s: s == s.strip() and bool(s))
_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_domain = st.lists(_label, min_size=1, max_size=3).map(".".join)
_text = st.text(max_size=200).map(lambda s: s.replace("\r", ""))
_seconds = st.floats(min_value=0.001, max_value=1e9, allow_nan=False)
_time = st.sampled_from(["00:00", "08:30", "09:00", "17:45", "18:00", "23:59", "24:00"])
_days = st.lists(
    st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
    min_size=1,
    max_size=7,
    unique=True,
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Valid policies covering every field the form shows and some advanced ones."""
    data: dict[str, Any] = {
        "collectors": {name: {"enabled": draw(st.booleans())} for name in COLLECTOR_NAMES},
        "privacy": {
            "record_window_titles": draw(st.booleans()),
            "mask_urls_to_domain": draw(st.booleans()),
        },
        "excluded_applications": draw(st.lists(_line, max_size=4, unique=True)),
        "excluded_domains": draw(st.lists(_domain, max_size=4, unique=True)),
        "retention_days": {
            name: draw(st.none() | st.integers(1, 3650)) for name in RETENTION_DOMAINS
        },
    }
    files = data["collectors"]["files"]
    files["interval_seconds"] = draw(st.none() | _seconds)
    files["paths"] = draw(st.none() | st.lists(_line, max_size=3))
    data["collectors"]["web"]["browsers"] = draw(
        st.none() | st.lists(st.sampled_from(["chromium", "chrome", "firefox"]), max_size=3)
    )
    data["collectors"]["processes"]["max_argv_bytes"] = draw(st.none() | st.integers(64, 4096))
    data["collectors"]["window"]["record_titles"] = draw(st.none() | st.booleans())
    if draw(st.booleans()):
        start, end = draw(_time), draw(_time)
        if start != end:
            data["privacy"]["working_hours_only"] = {
                "days": draw(_days),
                "from": start,
                "to": end,
                "timezone": draw(st.sampled_from(["UTC", "Asia/Tokyo", "Europe/Berlin"])),
            }
    enabled = draw(st.booleans())
    texts = (draw(_text), draw(_text))
    if enabled and not (texts[0].strip() and texts[1].strip()):
        texts = ("監視しています。", "This PC is monitored.")
    data["notice_mode"] = {"enabled": enabled, "text_ja": texts[0], "text_en": texts[1]}
    data["live_view"] = {
        "mode": draw(st.sampled_from(["off", "allowed", "consent"])),
        "consent_timeout_seconds": draw(st.integers(5, 300)),
        "max_minutes": draw(st.integers(1, 480)),
    }
    return validate_policy(data)


@given(policies())
def test_a_policy_submitted_as_shown_comes_back_unchanged(policy: Policy) -> None:
    form = form_from_policy(policy, timezone="UTC")
    assert validate_policy(policy_document(form)) == policy


@given(policies(), policies())
def test_every_change_has_a_row_in_words(old: Policy, new: Policy) -> None:
    changes = diff_policies(old, new)
    rows = describe_changes(changes)
    assert {r.path for r in rows} >= {c.path for c in changes}
    assert all(r.label and r.old is not None and r.new is not None for r in rows)


def _submit(advanced: str) -> Policy | PolicyError:
    form = form_from_policy(Policy(), timezone="UTC")
    form.advanced = advanced
    try:
        return validate_policy(policy_document(form))
    except PolicyError as exc:
        return exc


@given(st.text(max_size=300))
def test_any_advanced_text_is_a_policy_or_an_error_on_the_form(text: str) -> None:
    outcome = _submit(text)
    if isinstance(outcome, PolicyError):
        placed = field_error(outcome)
        assert placed.field == "advanced" and placed.message


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from([*COLLECTOR_NAMES, "bogus"]), _json, max_size=3))
def test_any_yaml_data_is_a_policy_or_an_error_on_the_form(data: dict[str, Any]) -> None:
    outcome = _submit(yaml.safe_dump(data))
    if isinstance(outcome, PolicyError):
        assert field_error(outcome).field == "advanced"
    else:
        # Accepted: exactly those collector settings, and every collector still on or
        # off as the form said (the default policy's: screens off, the others on).
        sections = msgspec.to_builtins(outcome.collectors)
        defaults = msgspec.to_builtins(Policy().collectors)
        assert {n: s["enabled"] for n, s in sections.items()} == {
            n: s["enabled"] for n, s in defaults.items()
        }


def test_deep_nesting_is_refused_not_a_crash() -> None:
    outcome = _submit("[" * 5000 + "]" * 5000)
    assert isinstance(outcome, PolicyError)
    assert field_error(outcome).message == "the advanced settings are nested too deeply"


def test_json_is_accepted_too() -> None:
    outcome = _submit('{"files": {"interval_seconds": 5, "paths": ["/srv/share"]}}')
    assert isinstance(outcome, Policy)
    assert outcome.collectors.files.interval_seconds == 5
    assert outcome.collectors.files.paths == ["/srv/share"]


def test_a_syntax_error_names_the_line() -> None:
    outcome = _submit("files:\n  interval_seconds: 5\n paths: x\n")
    assert isinstance(outcome, PolicyError)
    placed = field_error(outcome)
    assert placed.field == "advanced"
    assert placed.message.startswith("not valid YAML or JSON (line 3, column")


def test_working_hours_row_says_on_and_off() -> None:
    on = describe_changes([Change("privacy.working_hours_only.days", None, ["mon", "sun"])])
    assert [(r.label, r.old, r.new) for r in on] == [
        ("Collect during working hours only", "Off", "On"),
        ("Working hours: days", "—", "Mon Sun"),
    ]
