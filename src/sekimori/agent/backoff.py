"""Exponential backoff with full jitter for reconnecting to the server.

Full jitter (a uniform delay between 0 and the exponential cap) spreads a fleet's
reconnections after a server restart instead of having every PC retry in lock-step.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self._initial = initial
        self._maximum = maximum
        self._attempt = 0
        # Not for security: jitter only spreads load, so a plain PRNG is right here.
        self._rng = rng or random.Random()  # noqa: S311

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay(self) -> float:
        cap = min(self._maximum, self._initial * (2 ** min(self._attempt, 32)))
        self._attempt += 1
        return self._rng.uniform(0, cap)

    def reset(self) -> None:
        self._attempt = 0
