"""Events about the agent itself: its life, its outbox, its collectors' health."""

from __future__ import annotations

from typing import Final, Literal

from sekimori.protocol.events._base import Payload

__all__ = [
    "KINDS",
    "ActionOutcome",
    "AgentLog",
    "AgentStarted",
    "AgentStopped",
    "CollectorHealth",
    "NoticeUpdated",
    "OutboxDropped",
    "PolicyApplication",
]


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


class PolicyApplication(Payload):
    """The agent applied its group's collection policy ``version`` (``ok``), or
    refused it and kept the one it ran (``error``). ``restarted`` names the collectors
    whose settings changed; ``source`` says whether the policy came from the server
    or from the copy kept in the state directory (at start, before the server is
    reachable)."""

    group: str
    version: int
    ok: bool
    restarted: list[str]
    error: str = ""
    source: Literal["server", "stored"] = "server"


class NoticeUpdated(Payload):
    """The monitoring notice shown to the PC's user changed (``enabled`` False: it was
    withdrawn). ``paths`` are the files the agent wrote it to."""

    version: int
    enabled: bool
    paths: list[str]
    text_en: str = ""
    text_ja: str = ""


class ActionOutcome(Payload):
    """What became of a remote action on this PC (``sekimori.agent.actions``), sent
    through the outbox as well as answered on the connection, so the fleet's history
    shows refusals even when the server lost the ``action_result``. ``signers``: the
    operators whose signatures the agent verified."""

    nonce: str
    action: str
    status: Literal["done", "failed", "refused"]
    signers: list[str]
    reason: str = ""
    requested_by: str = ""
    device_count: int = 0


KINDS: Final[dict[str, type[Payload]]] = {
    "agent.started": AgentStarted,
    "agent.stopped": AgentStopped,
    "agent.log": AgentLog,
    "agent.outbox_dropped": OutboxDropped,
    "agent.collector_health": CollectorHealth,
    "agent.policy_applied": PolicyApplication,
    "agent.notice_updated": NoticeUpdated,
    "agent.action": ActionOutcome,
}
