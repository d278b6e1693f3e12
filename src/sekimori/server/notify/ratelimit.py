"""Rate limits: a token bucket per (target, rule, severity).

Each bucket holds at most ``burst`` tokens and refills at ``per_hour`` tokens an hour; a
notification takes one. When the bucket is empty the notification is suppressed and
counted; the next one that passes carries that count (``suppressed_before``) so it can
say "and 37 more". The state is plain data (:meth:`RateLimiter.export_state`,
:meth:`RateLimiter.import_state`) for the next session to persist across restarts and
replicas; the clock is injected (wall-clock seconds by default, since a persisted state
must mean the same after a restart, which a monotonic clock does not).

A RateLimiter is not thread-safe: the dispatcher's caller serialises use (one lock
around ``Dispatcher.send``) or keeps one per worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from sekimori.server.notify.errors import NotifyConfigError

__all__ = ["Admission", "BucketKey", "RateLimit", "RateLimiter"]


class RateLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``burst`` at once, then ``per_hour`` an hour."""

    per_hour: float = 10.0
    burst: int = 3

    def __post_init__(self) -> None:
        if not self.per_hour > 0 or self.burst < 1:
            raise NotifyConfigError("rate limit: per_hour must be > 0 and burst >= 1")


@dataclass(frozen=True, order=True)
class BucketKey:
    target: str
    rule_id: str
    severity: str


@dataclass(frozen=True)
class Admission:
    """``allowed``: send now. When allowed, ``suppressed`` is how many were held back
    since the last one sent (to mention); when not, how many are held back so far,
    this one included."""

    allowed: bool
    suppressed: int


class _Bucket(msgspec.Struct, kw_only=True):
    tokens: float
    updated: float
    suppressed: int = 0


class _SavedBucket(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    target: str
    rule_id: str
    severity: str
    tokens: float
    updated: float
    suppressed: int = 0


class RateLimiter:
    def __init__(
        self,
        default: RateLimit | None = None,
        per_target: Mapping[str, RateLimit] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.default = default or RateLimit()
        self.per_target = dict(per_target or {})
        self.clock = clock
        self._buckets: dict[BucketKey, _Bucket] = {}

    def limit_for(self, key: BucketKey) -> RateLimit:
        return self.per_target.get(key.target, self.default)

    def _refilled(self, key: BucketKey) -> _Bucket:
        limit = self.limit_for(key)
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(limit.burst), updated=now)
            return bucket
        # A clock that went backwards (NTP step) refills nothing rather than going negative.
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.per_hour / 3600)
        bucket.updated = max(bucket.updated, now)
        return bucket

    def acquire(self, key: BucketKey) -> Admission:
        """Take a token for one notification, or count it as suppressed."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            held, bucket.suppressed = bucket.suppressed, 0
            return Admission(allowed=True, suppressed=held)
        bucket.suppressed += 1
        return Admission(allowed=False, suppressed=bucket.suppressed)

    def refund(self, key: BucketKey, admission: Admission) -> None:
        """Undo an allowed ``acquire`` whose send failed: the token comes back and the
        held-back count is restored, so the next attempt still mentions it."""
        if not admission.allowed:
            return
        bucket = self._refilled(key)
        bucket.tokens = min(float(self.limit_for(key).burst), bucket.tokens + 1.0)
        bucket.suppressed += admission.suppressed

    def export_state(self) -> list[dict[str, Any]]:
        """Plain data (JSON/msgpack-ready). Full buckets with nothing held back are left
        out: they are the same as no bucket."""
        out = []
        for key in sorted(self._buckets):
            bucket = self._refilled(key)
            if bucket.suppressed == 0 and bucket.tokens >= self.limit_for(key).burst:
                continue
            saved = _SavedBucket(
                target=key.target,
                rule_id=key.rule_id,
                severity=key.severity,
                tokens=bucket.tokens,
                updated=bucket.updated,
                suppressed=bucket.suppressed,
            )
            out.append(msgspec.to_builtins(saved))
        return out

    def import_state(self, state: list[Any]) -> None:
        """Replace the buckets with exported ones; NotifyConfigError names a bad entry."""
        buckets: dict[BucketKey, _Bucket] = {}
        for index, item in enumerate(state):
            try:
                saved = msgspec.convert(item, _SavedBucket)
            except msgspec.ValidationError as exc:
                raise NotifyConfigError(f"rate limit state[{index}]: {exc}") from exc
            if saved.tokens < 0 or saved.suppressed < 0:
                raise NotifyConfigError(f"rate limit state[{index}]: negative value")
            key = BucketKey(saved.target, saved.rule_id, saved.severity)
            limit = self.limit_for(key)
            buckets[key] = _Bucket(
                tokens=min(saved.tokens, float(limit.burst)),
                updated=saved.updated,
                suppressed=saved.suppressed,
            )
        self._buckets = buckets
