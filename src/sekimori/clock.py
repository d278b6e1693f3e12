"""Time as Sekimori stores it: integer microseconds since the Unix epoch, UTC.

Integers sort, index and compare the same in SQLite and PostgreSQL, cost nothing to
convert on the ingest hot path, and carry no time-zone ambiguity.
"""

from __future__ import annotations

import datetime as dt
import time

__all__ = ["format_us", "now_us"]


def now_us() -> int:
    return time.time_ns() // 1000


def format_us(value: int | None) -> str:
    """ISO 8601 in UTC, to the second; empty for None."""
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(value / 1e6, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
