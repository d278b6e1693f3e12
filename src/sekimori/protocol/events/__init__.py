"""Event kinds and their typed payloads.

Every event on the wire is ``[seq, time_us, kind, os_user, payload]``. The payload is
validated against the struct registered for its kind. The registry is a fixed table
built from one module per domain (each with its ``KINDS``), so agent and server agree
on what a kind carries.
"""

from __future__ import annotations

from typing import Final

from sekimori.protocol.events import (
    agent,
    device,
    file,
    inventory,
    network,
    printing,
    process,
    screen,
    session,
    web,
    window,
)
from sekimori.protocol.events._base import Event, Payload
from sekimori.protocol.events.agent import (
    AgentLog,
    AgentStarted,
    AgentStopped,
    CollectorHealth,
    NoticeUpdated,
    OutboxDropped,
    PolicyApplication,
)

__all__ = [
    "EVENT_KINDS",
    "AgentLog",
    "AgentStarted",
    "AgentStopped",
    "CollectorHealth",
    "Event",
    "NoticeUpdated",
    "OutboxDropped",
    "Payload",
    "PolicyApplication",
]

_DOMAINS = (
    agent,
    inventory,
    process,
    session,
    window,
    web,
    file,
    device,
    printing,
    network,
    screen,
)


def _build() -> dict[str, type[Payload]]:
    kinds: dict[str, type[Payload]] = {}
    for module in _DOMAINS:
        for kind, payload in module.KINDS.items():
            if kind in kinds:
                raise RuntimeError(f"event kind {kind!r} registered twice")
            kinds[kind] = payload
    return kinds


EVENT_KINDS: Final[dict[str, type[Payload]]] = _build()
