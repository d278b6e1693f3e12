"""Reconnect backoff: exponential cap, full jitter, reset."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.agent.backoff import Backoff


class UpperBound(random.Random):
    """A real Random whose uniform() returns its upper bound, exposing the cap."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_cap_doubles_from_initial_up_to_the_maximum() -> None:
    backoff = Backoff(0.5, 6.0, rng=UpperBound())
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 6.0, 6.0, 6.0]
    assert backoff.attempt == 7


def test_cap_stays_at_the_maximum_after_very_many_attempts() -> None:
    backoff = Backoff(0.001, 300.0, rng=UpperBound())
    delays = [backoff.next_delay() for _ in range(200)]
    assert max(delays) == 300.0
    assert delays[-1] == 300.0


def test_reset_starts_again_from_initial() -> None:
    backoff = Backoff(1.0, 100.0, rng=UpperBound())
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert [backoff.next_delay() for _ in range(3)] == [1.0, 2.0, 4.0]


def test_seeded_delays_are_deterministic_and_jittered() -> None:
    first = Backoff(0.5, 30.0, rng=random.Random(7))  # noqa: S311 - jitter, not secrets
    second = Backoff(0.5, 30.0, rng=random.Random(7))  # noqa: S311
    a = [first.next_delay() for _ in range(20)]
    b = [second.next_delay() for _ in range(20)]
    assert a == b
    # Full jitter: a uniform draw under the cap, not the cap itself.
    reference = random.Random(7)  # noqa: S311
    caps = [min(30.0, 0.5 * 2**n) for n in range(20)]
    assert a == [reference.uniform(0, cap) for cap in caps]
    assert len(set(a)) == len(a)


def test_jitter_spreads_over_the_whole_range() -> None:
    backoff = Backoff(10.0, 10.0, rng=random.Random(1))  # noqa: S311
    delays = [backoff.next_delay() for _ in range(2000)]
    assert min(delays) < 1.0
    assert max(delays) > 9.0
    assert 4.0 < sum(delays) / len(delays) < 6.0


@given(
    initial=st.floats(min_value=1e-3, max_value=10.0),
    factor=st.floats(min_value=1.0, max_value=1e4),
    seed=st.integers(0, 2**32),
    attempts=st.integers(1, 80),
)
def test_delays_lie_within_zero_and_the_cap(
    initial: float, factor: float, seed: int, attempts: int
) -> None:
    maximum = initial * factor
    backoff = Backoff(initial, maximum, rng=random.Random(seed))  # noqa: S311
    for n in range(attempts):
        delay = backoff.next_delay()
        assert 0.0 <= delay <= min(maximum, initial * 2**n)


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_invalid_bounds_are_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="0 < initial <= maximum"):
        Backoff(initial, maximum)


def test_default_rng_gives_delays_in_range() -> None:
    backoff = Backoff(0.5, 4.0)
    assert all(0.0 <= backoff.next_delay() <= 4.0 for _ in range(50))
