"""The live-view setting in the policy editor: shown, submitted, placed on the form
when wrong, and described in words in the change list."""

from __future__ import annotations

from starlette.datastructures import FormData

from sekimori.protocol.policy import LiveViewPolicy, Policy
from sekimori.server.console.policy_changes import describe_changes
from sekimori.server.console.policy_form import (
    field_error,
    form_from_policy,
    form_from_submission,
    policy_document,
)
from sekimori.server.policies import PolicyError, diff_policies, validate_policy


def _submitted(**live: str) -> FormData:
    shown = form_from_policy(Policy(), timezone="UTC")
    fields = [(f"collector_{n}", "on") for n, on in shown.collectors.items() if on]
    fields += [("record_window_titles", "on"), ("wh_timezone", "UTC")]
    return FormData([*fields, *live.items()])


def test_the_form_sets_live_view() -> None:
    form = form_from_submission(
        _submitted(live_view="consent", live_consent_timeout="45", live_max_minutes="10")
    )
    policy = validate_policy(policy_document(form))
    assert policy.live_view == LiveViewPolicy(
        mode="consent", consent_timeout_seconds=45, max_minutes=10
    )
    shown = form_from_policy(policy, timezone="UTC")
    assert (shown.live_view, shown.live_consent_timeout, shown.live_max_minutes) == (
        "consent",
        "45",
        "10",
    )


def test_a_form_without_the_fields_keeps_live_view_off() -> None:
    policy = validate_policy(policy_document(form_from_submission(_submitted())))
    assert policy.live_view == LiveViewPolicy()


def test_a_wrong_value_is_placed_on_its_field() -> None:
    for live, field in [
        ({"live_view": "always"}, "live_view"),
        ({"live_consent_timeout": "1"}, "live_consent_timeout"),
        ({"live_max_minutes": "9999"}, "live_max_minutes"),
        ({"live_max_minutes": "soon"}, "live_max_minutes"),
    ]:
        form = form_from_submission(_submitted(**live))
        try:
            validate_policy(policy_document(form))
        except PolicyError as exc:
            placed = field_error(exc)
            assert placed.field == field and placed.message, (live, placed)
        else:
            raise AssertionError(f"{live} was accepted")


def test_the_change_list_names_the_setting_and_its_value() -> None:
    new = Policy(live_view=LiveViewPolicy(mode="consent"))
    rows = describe_changes(diff_policies(Policy(), new))
    assert [(r.label, r.old, r.new) for r in rows] == [
        ("Live view of the screen", "Not allowed", "Allowed with the user's consent")
    ]
