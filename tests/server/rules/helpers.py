"""Events for rule tests, built from the real payload structs as ingest stores them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import msgspec

from sekimori.protocol.events import EVENT_KINDS, Payload
from sekimori.server.rules import EvalEvent

TOKYO = ZoneInfo("Asia/Tokyo")


def tokyo_us(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    """Microseconds since the epoch of a wall-clock time in Tokyo."""
    moment = dt.datetime(year, month, day, hour, minute, tzinfo=TOKYO)
    return int(moment.timestamp() * 1_000_000)


# A Wednesday at 10:00 in Tokyo: within working hours.
WORKDAY_US = tokyo_us(2026, 11, 25, 10)


def event(
    payload: Payload,
    *,
    time_us: int = WORKDAY_US,
    os_user: str | None = "alice",
    device_id: str = "dev-1",
    group: str | None = "office",
) -> EvalEvent:
    """An EvalEvent of ``payload``'s kind; the payload goes through the stored JSON and
    back to its type, as the ingest writer reads a row without the channel's struct."""
    kind = next(k for k, cls in EVENT_KINDS.items() if type(payload) is cls)
    stored = msgspec.json.decode(msgspec.json.encode(payload), type=EVENT_KINDS[kind])
    return EvalEvent(device_id, group, kind, time_us, os_user, stored)
