"""The benchmark's events: realistic ``agent.log`` lines, and the rows they become.

Messages are about 100 bytes and all different (ids, paths, durations vary), so zlib
on the wire and the store's pages see text like a real log, not one repeated line.
Generation is seeded: every run measures the same bytes.
"""

from __future__ import annotations

import random
from typing import Literal

import msgspec

from sekimori.agent.outbox import PendingEvent
from sekimori.clock import now_us
from sekimori.protocol.events import AgentLog
from sekimori.server.event_fields import event_fields
from sekimori.server.store.events import EventRow

__all__ = ["KIND", "make_events", "server_rows"]

KIND = "agent.log"

Level = Literal["debug", "info", "warning", "error"]

_LEVELS: tuple[Level, ...] = ("debug", "info", "warning", "error")
# Mostly info, some debug and warnings, few errors: the shape of a real agent log.
_LEVEL_WEIGHTS = (10, 70, 15, 5)
_SOURCES = (
    "collector.process",
    "collector.window",
    "collector.file",
    "collector.usb",
    "collector.logon",
    "channel",
    "outbox",
    "updater",
)
_VERBS = ("opened", "closed", "scanned", "skipped", "retried", "refreshed", "queued", "read")
_DIRS = ("C:/Users/{u}/Documents", "/home/{u}/work", "C:/ProgramData/Vendor", "/var/log/app")
_WORDS = ("report", "invoice", "backup", "draft", "export", "notes", "build", "config")
_EXTS = (".docx", ".xlsx", ".pdf", ".log", ".csv", ".json", ".zip")

_json = msgspec.json.Encoder()


def _message(rng: random.Random, user: str) -> str:
    folder = rng.choice(_DIRS).format(u=user)
    name = f"{rng.choice(_WORDS)}-{rng.randrange(10_000):04d}{rng.choice(_EXTS)}"
    text = (
        f"{rng.choice(_VERBS)} {folder}/{name} in {rng.randrange(1, 5000)} ms "
        f"(pid {rng.randrange(300, 65_000)}, handle 0x{rng.getrandbits(32):08x}, "
        f"try {rng.randrange(1, 4)})"
    )
    # Pad or trim to 80..120 characters so sizes vary around 100 bytes.
    target = rng.randrange(80, 121)
    if len(text) < target:
        text += " " + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(target))
    return text[:target]


def make_events(count: int, *, seed: int, os_user: str) -> list[PendingEvent]:
    """``count`` agent.log events with explicit, increasing timestamps."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not a secret
    start = now_us()
    events = []
    for i in range(count):
        payload = AgentLog(
            level=rng.choices(_LEVELS, _LEVEL_WEIGHTS)[0],
            source=rng.choice(_SOURCES),
            message=_message(rng, os_user),
        )
        events.append(PendingEvent(KIND, payload, os_user, start + i * 50))
    return events


def server_rows(
    device_id: str, events: list[PendingEvent], first_seq: int, received_us: int
) -> list[EventRow]:
    """The rows the server stores for these events (same JSON as its ingest path)."""
    rows: list[EventRow] = []
    for offset, event in enumerate(events):
        assert isinstance(event.payload, AgentLog)  # noqa: S101 - built by make_events
        assert event.time_us is not None  # noqa: S101 - built by make_events
        rows.append(
            (
                device_id,
                first_seq + offset,
                event.time_us,
                received_us,
                event.kind,
                event.os_user,
                _json.encode(event.payload).decode("utf-8"),
                *event_fields(event.payload),
            )
        )
    return rows
