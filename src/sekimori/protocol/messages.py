"""Wire messages of the agent<->server channel, protocol version 1.

Each WebSocket binary frame is one msgpack map with ``v`` (protocol version) and
``t`` (message type) beside the message's fields. Unknown extra fields are ignored
(a newer peer may add optional fields within a version); missing or mistyped fields
are refused.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "AgentMessage",
    "Command",
    "CommandResult",
    "Enroll",
    "Enrolled",
    "ErrorMessage",
    "EventBatch",
    "Heartbeat",
    "Hello",
    "Message",
    "Rejection",
    "ServerMessage",
    "Welcome",
]

PROTOCOL_VERSION = 1


class Message(msgspec.Struct, tag_field="t", kw_only=True):
    v: int = PROTOCOL_VERSION


# ---- agent -> server -------------------------------------------------------------


class Enroll(Message, tag="enroll"):
    """First and only message on a connection without a device certificate."""

    token: str
    csr_pem: str
    hostname: str
    os: str
    os_version: str
    agent_version: str
    group: str | None = None


class Hello(Message, tag="hello"):
    """First message on an authenticated connection."""

    agent_version: str
    hostname: str
    os: str
    os_version: str


class EventBatch(Message, tag="batch"):
    """Events ``first_seq..last_seq`` (gaps allowed), compressed msgpack list of Event."""

    first_seq: int
    last_seq: int
    count: int
    compression: Literal["zlib", "none"]
    body: bytes


class Heartbeat(Message, tag="heartbeat"):
    outbox_events: int
    outbox_bytes: int
    dropped_total: int


class CommandResult(Message, tag="command_result"):
    command_id: str
    ok: bool
    detail: dict[str, str | int | float | bool | None]


# ---- server -> agent -------------------------------------------------------------


class Enrolled(Message, tag="enrolled"):
    device_id: str
    certificate_pem: str


class Welcome(Message, tag="welcome"):
    device_id: str
    server_version: str
    heartbeat_seconds: float
    max_frame_bytes: int
    max_batch_events: int
    # Everything up to here is committed: the agent drops it from its outbox.
    acked_seq: int


class Rejection(msgspec.Struct, kw_only=True):
    seq: int
    reason: str


class Ack(Message, tag="ack"):
    """Events through ``through_seq`` are committed (or quarantined, see rejected)."""

    through_seq: int
    stored: int
    duplicates: int
    rejected: list[Rejection] = msgspec.field(default_factory=list)


class Command(Message, tag="command"):
    """A command for the agent. Read-only commands only in this version; commands
    that change a PC carry an operator signature (see docs/protocol.md)."""

    command_id: str
    name: Literal["status"]


class ErrorMessage(Message, tag="error"):
    code: str
    message: str
    retryable: bool


AgentMessage = Enroll | Hello | EventBatch | Heartbeat | CommandResult
ServerMessage = Enrolled | Welcome | Ack | Command | ErrorMessage
