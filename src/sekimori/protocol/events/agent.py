"""Events about the agent itself: its life, its outbox, its collectors' health."""

from __future__ import annotations

from typing import Final, Literal

from sekimori.protocol.events._base import Payload

__all__ = ["KINDS", "AgentLog", "AgentStarted", "AgentStopped", "CollectorHealth", "OutboxDropped"]


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


class CollectorHealth(Payload):
    """A collector started, failed (and will be restarted), or was disabled."""

    collector: str
    status: Literal["running", "failed", "disabled", "unavailable"]
    reason: str = ""
    restarts: int = 0


KINDS: Final[dict[str, type[Payload]]] = {
    "agent.started": AgentStarted,
    "agent.stopped": AgentStopped,
    "agent.log": AgentLog,
    "agent.outbox_dropped": OutboxDropped,
    "agent.collector_health": CollectorHealth,
}
