"""Token buckets with an injected clock; state exported and imported as plain data."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.server.notify import Admission, BucketKey, NotifyConfigError, RateLimit, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


KEY = BucketKey("ops-mail", "usb-mass-storage", "high")


def test_a_burst_passes_then_the_rest_is_counted_and_mentioned_later() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_hour=6, burst=2), clock=clock)
    assert [limiter.acquire(KEY).allowed for _ in range(2)] == [True, True]
    held = [limiter.acquire(KEY) for _ in range(37)]
    assert not any(a.allowed for a in held)
    assert held[-1].suppressed == 37
    clock.now += 600  # 6 an hour: one token every 10 minutes
    admitted = limiter.acquire(KEY)
    assert admitted.allowed and admitted.suppressed == 37
    assert limiter.acquire(KEY).suppressed == 1  # counting starts again


def test_buckets_are_separate_per_target_rule_and_severity() -> None:
    limiter = RateLimiter(RateLimit(per_hour=1, burst=1), clock=Clock())
    assert limiter.acquire(KEY).allowed
    assert not limiter.acquire(KEY).allowed
    for other in (
        BucketKey("slack", KEY.rule_id, KEY.severity),
        BucketKey(KEY.target, "mass-delete", KEY.severity),
        BucketKey(KEY.target, KEY.rule_id, "critical"),
    ):
        assert limiter.acquire(other).allowed


def test_a_target_may_have_its_own_limit() -> None:
    limiter = RateLimiter(
        RateLimit(per_hour=1, burst=1), {"pager": RateLimit(per_hour=60, burst=5)}, Clock()
    )
    pager = BucketKey("pager", "r", "high")
    assert sum(limiter.acquire(pager).allowed for _ in range(10)) == 5


def test_a_refund_gives_back_the_token_and_the_held_count() -> None:
    limiter = RateLimiter(RateLimit(per_hour=1, burst=1), clock=Clock())
    limiter.acquire(KEY)
    limiter.acquire(KEY)  # held back
    limiter._buckets[KEY].tokens = 1.0  # as if an hour passed
    admitted = limiter.acquire(KEY)
    assert admitted.suppressed == 1
    limiter.refund(KEY, admitted)  # the send failed
    again = limiter.acquire(KEY)
    assert again.allowed and again.suppressed == 1


def test_a_clock_going_backwards_refills_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_hour=3600, burst=1), clock=clock)
    limiter.acquire(KEY)
    clock.now -= 3600
    assert not limiter.acquire(KEY).allowed


def test_state_survives_an_export_and_import_through_json() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_hour=2, burst=2), clock=clock)
    for _ in range(5):
        limiter.acquire(KEY)
    limiter.acquire(BucketKey("slack", "r", "low"))
    saved = json.loads(json.dumps(limiter.export_state()))
    assert saved[0] == {
        "target": "ops-mail",
        "rule_id": "usb-mass-storage",
        "severity": "high",
        "tokens": 0.0,
        "updated": 1_000_000.0,
        "suppressed": 3,
    }
    restored = RateLimiter(RateLimit(per_hour=2, burst=2), clock=clock)
    restored.import_state(saved)
    assert restored.acquire(KEY).suppressed == 4
    clock.now += 1800
    assert restored.acquire(KEY) == Admission(allowed=True, suppressed=4)


def test_full_idle_buckets_are_not_exported() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_hour=60, burst=2), clock=clock)
    limiter.acquire(KEY)
    clock.now += 3600
    assert limiter.export_state() == []


@pytest.mark.parametrize(
    ("state", "start"),
    [
        (
            [{"target": "t", "rule_id": "r", "severity": "high", "tokens": "x", "updated": 0}],
            "rate limit state[0]: Expected `float`",
        ),
        (
            [{"target": "t", "rule_id": "r", "severity": "high", "tokens": -1, "updated": 0}],
            "rate limit state[0]: negative",
        ),
        (["garbage"], "rate limit state[0]: Expected `object`"),
    ],
)
def test_bad_state_is_a_clear_error(state: list[object], start: str) -> None:
    with pytest.raises(NotifyConfigError) as caught:
        RateLimiter().import_state(state)
    assert str(caught.value).startswith(start)


@given(
    st.integers(1, 10),
    st.floats(0.5, 100),
    st.lists(st.floats(0, 7200), min_size=1, max_size=60),
)
def test_never_more_than_burst_plus_the_refill(
    burst: int, per_hour: float, gaps: list[float]
) -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_hour=per_hour, burst=burst), clock=clock)
    start, sent, seen = clock.now, 0, 0
    for gap in gaps:
        clock.now += gap
        admission = limiter.acquire(KEY)
        seen += 1
        sent += admission.allowed
    assert sent <= burst + (clock.now - start) * per_hour / 3600 + 1e-9
    assert sent + limiter._buckets[KEY].suppressed <= seen
