"""Feed timestamps (RFC 3339, NVD's zone-less ISO times, KEV's dates) to integer
microseconds UTC. Fractional seconds of any length (OSV writes nanoseconds) are cut
to microseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["parse_time_us"]

_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time_us(text: str) -> int:
    """Microseconds since the epoch; a time without a zone is UTC. Raises ValueError."""
    m = _TIME.match(text.strip())
    if m is None:
        raise ValueError(f"not a date or RFC 3339 time: {text!r}")
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hour = int(m.group(4) or 0)
    minute = int(m.group(5) or 0)
    second = int(m.group(6) or 0)
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    zone = m.group(8)
    offset = timedelta(0)
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC) - offset
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
