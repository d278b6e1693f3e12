"""Event kinds and their typed payloads.

Every event on the wire is ``[seq, time_us, kind, os_user, payload]``. The payload is
validated against the struct registered for its kind. The registry is a fixed table:
later features add their kinds here, each with a struct, so agent and server agree on
what a kind carries.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = [
    "EVENT_KINDS",
    "AgentLog",
    "AgentStarted",
    "AgentStopped",
    "Event",
    "OutboxDropped",
    "Payload",
]


class Payload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of all event payloads."""


class AgentStarted(Payload):
    version: str
    pid: int
    hostname: str


class AgentStopped(Payload):
    reason: str


class AgentLog(Payload):
    """A log line the agent forwards to the server (a collector's failure, say)."""

    level: Literal["debug", "info", "warning", "error"]
    source: str
    message: str


class OutboxDropped(Payload):
    """The outbox was full: the oldest events were dropped to make room."""

    count: int
    first_seq: int
    last_seq: int
    bytes: int


EVENT_KINDS: Final[dict[str, type[Payload]]] = {
    "agent.started": AgentStarted,
    "agent.stopped": AgentStopped,
    "agent.log": AgentLog,
    "agent.outbox_dropped": OutboxDropped,
}


class Event(msgspec.Struct, array_like=True):
    """One event as it travels in a batch.

    ``payload`` stays raw msgpack until the server validates it against its kind, so a
    single bad event can be quarantined without refusing the whole batch.
    """

    seq: int
    time_us: int
    kind: str
    os_user: str | None
    payload: msgspec.Raw
