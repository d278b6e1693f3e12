"""RuleSet: the kind index finds what testing every rule finds; thresholds and their state."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekimori.protocol.events.file import FileDeleted
from sekimori.server.rules import (
    BenchResult,
    EvalEvent,
    RuleError,
    RuleSet,
    ThresholdStateError,
    ThresholdTracker,
    bench_evaluate,
    load_rules,
)
from sekimori.server.rules._bench import generated_rules, sample_events
from sekimori.server.rules.model import Threshold
from tests.server.rules.helpers import WORKDAY_US, event

LISTS = {
    "blocked_domains": ["intranet.example.jp"],
    "banned_software": ["x"],
    "blocked_addresses": ["93.184.0.0/16"],
}


def _linear(rules: RuleSet, e: EvalEvent) -> list[str]:
    """What testing every rule of the kind in turn gives (no index)."""
    fired = []
    for rule in rules.rules:
        if not rule.enabled or e.kind not in rule.kinds or rule.threshold:
            continue
        if rule.groups and e.group not in rule.groups:
            continue
        if rule.schedule and not rule.schedule.admits(e.time_us):
            continue
        if rule.match.compile(LISTS_FROZEN, rule.id, rule.source)(e):
            fired.append(rule.id)
    return fired


LISTS_FROZEN = {k: frozenset(v) for k, v in LISTS.items()}
RULES = generated_rules(220)
EVENTS = sample_events(3000, seed=11)


def test_the_index_finds_exactly_what_testing_every_rule_finds() -> None:
    rules = RuleSet(RULES, LISTS)
    total = 0
    for e in EVENTS:
        got = [m.rule_id for m in rules.evaluate(e)]
        assert got == _linear(rules, e)
        total += len(got)
    assert total > 0  # the sample does hit some rules


_HOSTS = st.sampled_from(
    ["bad3.example", "a.bad3.example", "x14.test", "ok.example", "BAD25.EXAMPLE"]
)


@settings(max_examples=60)
@given(_HOSTS, st.sampled_from(["/leak1/", "/admin/12/2", "/", "/leak12/x"]), st.integers(0, 9))
def test_the_index_agrees_on_generated_web_events(host: str, path: str, n: int) -> None:
    from sekimori.protocol.events.web import WebVisit

    rules = RuleSet(RULES, LISTS)
    e = event(
        WebVisit(url=f"https://{host}{path}{n}", title="", host=host, browser="brave", profile="p")
    )
    assert [m.rule_id for m in rules.evaluate(e)] == _linear(rules, e)


def test_rule_ids_are_unique_within_a_set() -> None:
    text = "- id: a\n  title: T\n  severity: low\n  kinds: [web.visit]\n"
    with pytest.raises(RuleError, match="used twice"):
        RuleSet(load_rules(text, "a.yaml") + load_rules(text, "b.yaml"))


THRESHOLD = Threshold(count=3, within_us=60_000_000, by=())


def test_a_threshold_fires_once_then_waits_for_the_window_to_pass() -> None:
    tracker = ThresholdTracker()
    second = 1_000_000
    fired = [tracker.observe("r", THRESHOLD, ("alice",), t * second) for t in range(10)]
    assert fired == [None, None, None, 4, None, None, None, None, None, None]
    # Quiet until t=63 (the window after the firing); at t=64 the minute before still
    # holds more than 3 events (7, 8, 9, 64 s), so it fires again, once.
    again = [tracker.observe("r", THRESHOLD, ("alice",), t * second) for t in range(64, 68)]
    assert again == [4, None, None, None]
    # After a long pause, it takes more than 3 new events to fire.
    later = [tracker.observe("r", THRESHOLD, ("alice",), t * second) for t in range(500, 504)]
    assert later == [None, None, None, 4]


def test_threshold_windows_slide_and_keys_are_apart() -> None:
    tracker = ThresholdTracker()
    minute = 60_000_000
    # One event every 30 s never puts 4 within a minute.
    assert all(tracker.observe("r", THRESHOLD, ("a",), n * minute // 2) is None for n in range(20))
    # Two keys interleaved: each has its own count.
    assert [tracker.observe("r", THRESHOLD, (k,), n) for n, k in enumerate("ababab")] == [None] * 6
    # Out of order: a late event counts where it belongs.
    times = [10, 40, 20, 30]
    assert [tracker.observe("late", THRESHOLD, (), t) for t in times] == [None, None, None, 4]


def test_threshold_state_survives_a_restart_without_losing_or_repeating() -> None:
    rules_text = (
        "- id: deletions\n  title: T\n  severity: high\n  kinds: [file.deleted]\n"
        "  threshold: {count: 5, within: 1m, by: [os_user, device_id]}\n"
    )
    rules = load_rules(rules_text)

    def deletion(n: int) -> EvalEvent:
        return event(FileDeleted(path=f"/tmp/{n}"), time_us=WORKDAY_US + n * 1_000_000)

    first = RuleSet(rules)
    assert [bool(first.evaluate(deletion(n))) for n in range(4)] == [False] * 4
    state = json.loads(json.dumps(first.thresholds.export_state()))
    # Restarted: two more events, the sixth fires (nothing lost) …
    second = RuleSet(rules, thresholds=ThresholdTracker.from_state(state))
    assert [bool(second.evaluate(deletion(n))) for n in (4, 5)] == [False, True]
    # … and after another restart within the window, the dedup holds (nothing repeated).
    state = json.loads(json.dumps(second.thresholds.export_state()))
    third = RuleSet(rules, thresholds=ThresholdTracker.from_state(state))
    assert not any(third.evaluate(deletion(n)) for n in range(6, 12))


def test_threshold_matches_carry_count_and_key() -> None:
    rules = RuleSet(
        load_rules(
            "- id: d\n  title: T\n  severity: high\n  kinds: [file.deleted]\n"
            "  threshold: {count: 2, within: 1m, by: [os_user, device.group]}\n"
        )
    )
    matches = [
        m
        for n in range(3)
        for m in rules.evaluate(
            event(FileDeleted(path=f"/x{n}"), os_user="bob", time_us=WORKDAY_US + n)
        )
    ]
    assert [(m.count, m.key, m.severity) for m in matches] == [(3, ("bob", "office"), "high")]


@pytest.mark.parametrize(
    "state",
    [None, {}, {"version": 2, "windows": []}, {"version": 1, "windows": [{"rule": "r"}]}, "x"],
)
def test_bad_threshold_state_is_refused_clearly(state: object) -> None:
    with pytest.raises(ThresholdStateError):
        ThresholdTracker.from_state(state)


def test_stale_threshold_keys_expire() -> None:
    tracker = ThresholdTracker()
    tracker.observe("r", THRESHOLD, ("a",), 0)
    tracker.observe("r", THRESHOLD, ("b",), 100_000_000)
    assert tracker.expire(now_us=130_000_000, longest_window_us=60_000_000) == 1
    assert len(tracker) == 1


def test_bench_evaluate_reports_per_event_costs() -> None:
    result = bench_evaluate(events=500, extra_rules=100, rounds=1)
    assert isinstance(result, BenchResult)
    assert result.rules == 109
    assert 0 < result.none_us < result.builtin_plus_us
