"""Wire messages of the agent<->server channel, protocol version 1.

Each WebSocket binary frame is one msgpack map with ``v`` (protocol version) and
``t`` (message type) beside the message's fields. Unknown extra fields are ignored
(a newer peer may add optional fields within a version); missing or mistyped fields
are refused.

Message types added within version 1 are gated by a capability: the agent lists what
it understands in ``Hello.capabilities`` and the server sends such a message only to
an agent that listed it (an older agent would refuse an unknown ``t``). The agent sends
a gated reply only in answer to the server's gated message, so an older server never
sees one.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from sekimori.protocol.actions import (
    MAX_ATTACHMENT_BYTES,
    MAX_DATA_CHUNK_BYTES,
    MAX_OUTPUT_CHARS,
    ProofStep,
    SignedCommand,
)
from sekimori.protocol.live_input import InputEvent
from sekimori.protocol.live_input import InputEvents as _InputEvents
from sekimori.protocol.signing import SignedKeyring

__all__ = [
    "CAPABILITY_ACTIONS",
    "CAPABILITY_LIVE",
    "CAPABILITY_POLICY",
    "CAPABILITY_REMOTE_CONTROL",
    "CAPABILITY_SCREEN_BURST",
    "MAX_LIVE_FRAME_BYTES",
    "MAX_POLICY_DOCUMENT_BYTES",
    "MAX_POLICY_ERROR_CHARS",
    "PROTOCOL_VERSION",
    "Ack",
    "ActionData",
    "ActionRequest",
    "ActionResult",
    "AgentMessage",
    "Command",
    "CommandResult",
    "Enroll",
    "Enrolled",
    "ErrorMessage",
    "EventBatch",
    "Heartbeat",
    "Hello",
    "InputEvent",
    "LiveControl",
    "LiveFrame",
    "LiveInput",
    "LiveStart",
    "LiveState",
    "LiveStop",
    "Message",
    "OperatorsApplied",
    "OperatorsUpdate",
    "PolicyApplied",
    "PolicyUpdate",
    "Rejection",
    "ScreenBurst",
    "ServerMessage",
    "Welcome",
]

PROTOCOL_VERSION = 1

# Capabilities an agent may list in ``Hello.capabilities``.
CAPABILITY_POLICY = "policy"  # understands ``policy`` and answers ``policy_applied``
# understands ``live_start``/``live_stop`` and answers ``live_state``/``live_frame``
CAPABILITY_LIVE = "live"
# understands ``screen_burst`` (its screens collector keeps frames for a burst)
CAPABILITY_SCREEN_BURST = "screen_burst"
# understands ``operators`` and ``action`` (answers ``operators_applied``,
# ``action_data`` and ``action_result``): signed remote actions, see
# sekimori.protocol.actions / sekimori.protocol.signing and docs/actions.md
CAPABILITY_ACTIONS = "actions"
# understands ``live_input`` (remote control over a live-view session; injected only
# while a signed ``remote_control`` grant is active) and may send ``live_control``
CAPABILITY_REMOTE_CONTROL = "remote_control"
# A policy document on the wire (JSON). The largest valid policy is far bigger in
# theory (1,000 patterns of 1 KiB per list), but nothing real comes near 1 MiB, and
# the agent reads server frames of at most 4 MiB.
MAX_POLICY_DOCUMENT_BYTES = 1024 * 1024
MAX_POLICY_ERROR_CHARS = 2000
# One live-view picture (a compressed JPEG/WebP/PNG of one screen, scaled down): far
# below the server's 4 MiB frame limit, with room for the envelope.
MAX_LIVE_FRAME_BYTES = 3 * 1024 * 1024

LiveSessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]
LiveReason = Annotated[str, msgspec.Meta(max_length=500)]
LiveFormat = Literal["jpeg", "webp", "png"]
Monitor = Annotated[int, msgspec.Meta(ge=0, le=32)]
Pixels = Annotated[int, msgspec.Meta(ge=1, le=65535)]


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
    # Optional features this agent speaks (see the module docstring); an older agent
    # sends none and gets none of the gated messages.
    capabilities: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=32)
    ] = msgspec.field(default_factory=list)


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


class PolicyApplied(Message, tag="policy_applied"):
    """The agent's answer to ``policy``: it now runs ``version`` (``ok``), or it
    refused or failed to apply it and keeps what it ran before (``error`` says why)."""

    version: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    ok: bool
    error: Annotated[str, msgspec.Meta(max_length=MAX_POLICY_ERROR_CHARS)] = ""


class LiveState(Message, tag="live_state"):
    """Where a live-view session stands on the PC: ``started`` (the indicator is shown
    and frames follow), ``refused`` (the policy does not allow live view, or the
    person declined or did not answer), ``stopped`` (by ``live_stop``, the maximum
    duration, or an error on the PC). ``reason`` says why, for the console."""

    session_id: LiveSessionId
    state: Literal["started", "refused", "stopped"]
    reason: LiveReason = ""


class LiveFrame(Message, tag="live_frame"):
    """One picture of a live-view session. Transient: never in the outbox, never
    resent; ``capture_us`` is when the screen was grabbed (the agent's clock)."""

    session_id: LiveSessionId
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    capture_us: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    monitor: Monitor
    width: Pixels
    height: Pixels
    format: LiveFormat
    image: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_LIVE_FRAME_BYTES)]


class LiveControl(Message, tag="live_control"):
    """Remote control of a live-view session on this PC: ``granted`` (the person
    allowed a signed ``remote_control`` command; input for this session is injected
    until ``until_us``, the agent's clock) or ``ended`` (expired, taken back by the
    person, the session ended; ``reason`` says which). Sent only after the agent ran
    a ``remote_control`` action, so only to a server that sends actions."""

    session_id: LiveSessionId
    state: Literal["granted", "ended"]
    until_us: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0
    reason: LiveReason = ""


class OperatorsApplied(Message, tag="operators_applied"):
    """The agent's answer to ``operators``: the keyring version it now trusts, or why
    it refused the chain it was sent (it keeps the version it had)."""

    version: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    ok: bool
    error: Annotated[str, msgspec.Meta(max_length=MAX_POLICY_ERROR_CHARS)] = ""


class ActionData(Message, tag="action_data"):
    """A chunk of what an action produced (a collected file), in order, before its
    ``action_result``."""

    nonce: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
    offset: Annotated[int, msgspec.Meta(ge=0, le=2**40)]
    chunk: Annotated[bytes, msgspec.Meta(max_length=MAX_DATA_CHUNK_BYTES)]


class ActionResult(Message, tag="action_result"):
    """What became of an ``action`` on this PC. ``refused``: the agent would not run it
    (bad or missing signature, another device, expired, replayed, not allowed by its
    local policy — ``reason`` says which); ``failed``: it ran and did not succeed;
    ``done``: it succeeded. ``output`` is capped; ``data_sha256``/``data_size``
    describe the bytes sent in ``action_data`` chunks (a collected file)."""

    nonce: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
    status: Literal["done", "failed", "refused"]
    reason: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    exit_code: int | None = None
    output: Annotated[str, msgspec.Meta(max_length=MAX_OUTPUT_CHARS)] = ""
    data_size: Annotated[int, msgspec.Meta(ge=0, le=2**40)] = 0
    data_sha256: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")] = ""


# ---- server -> agent -------------------------------------------------------------


class Enrolled(Message, tag="enrolled"):
    device_id: str
    certificate_pem: str
    # The deployment's current operator keyring (an encoded ``SignedKeyring``), or
    # empty when none exists yet. The agent pins it only if its fingerprint equals the
    # one given to ``sekimori agent enroll --operators`` (it never trusts the server's
    # word for operator keys).
    operators: Annotated[bytes, msgspec.Meta(max_length=512 * 1024)] = b""


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


class PolicyUpdate(Message, tag="policy"):
    """The collection policy of the device's group (``sekimori.protocol.policy``), sent
    after ``welcome`` and again whenever the group's policy gets a new version. Only
    to agents that listed the ``policy`` capability.

    ``document`` is the policy as JSON bytes rather than a typed field: the agent
    validates it itself (``decode_policy_document``), so a policy it cannot accept is
    answered with ``policy_applied(ok=False)`` naming the field, instead of failing
    the whole frame and dropping the connection. Version 0 is the default policy of a
    group that never had one saved ("the agent's own settings").
    """

    group: Annotated[str, msgspec.Meta(max_length=255)]
    version: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    document: Annotated[bytes, msgspec.Meta(max_length=MAX_POLICY_DOCUMENT_BYTES)]


class LiveStart(Message, tag="live_start"):
    """Start showing this PC's screen to ``viewer`` (a console user). Only to agents
    that listed the ``live`` capability. The agent checks its own policy first (live
    view off, allowed, or allowed with the person's consent), asks for consent when
    its policy or ``consent_required`` says so, shows an indicator for as long as the
    session lasts, and stops by itself after ``max_seconds``.

    ``monitor``: 0 for the whole desktop (every monitor), else the monitor's number
    (1 = the first). ``scale``: the pictures' size relative to the screen.
    ``record``: the agent also keeps a picture a second as a ``screen.frame`` event
    (trigger ``live``), sent through its outbox like every event and stored by the
    server with the other screen frames."""

    session_id: LiveSessionId
    viewer: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    max_fps: Annotated[float, msgspec.Meta(ge=0.2, le=30)] = 4.0
    scale: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] = 60
    format: LiveFormat = "jpeg"
    monitor: Monitor = 0
    consent_required: bool = False
    max_seconds: Annotated[int, msgspec.Meta(ge=1, le=86400)] = 3600
    record: bool = False


class LiveStop(Message, tag="live_stop"):
    session_id: LiveSessionId
    reason: LiveReason = ""


class LiveInput(Message, tag="live_input"):
    """Keyboard and mouse events for a live-view session (remote control), in order.
    Only to agents that listed the ``remote_control`` capability. ``nonce`` names the
    signed ``remote_control`` command that granted control; the agent injects the
    events only while that grant is active for this session and its viewer, and
    drops (and counts) them otherwise (``sekimori.protocol.live_input``)."""

    session_id: LiveSessionId
    nonce: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
    events: _InputEvents


class ScreenBurst(Message, tag="screen_burst"):
    """A rule raised an alert about this PC: its screens collector, if the policy has
    it running, sends the frames it kept from just before and a few more. Data only:
    it changes nothing on the PC, and an agent without the collector ignores it."""

    alert_id: Annotated[int, msgspec.Meta(ge=1)]
    rule_id: Annotated[str, msgspec.Meta(max_length=128)]


class OperatorsUpdate(Message, tag="operators"):
    """The deployment's operator keyrings after the version the agent trusts, oldest
    first: the agent accepts each only if it follows the one before and is signed by
    a quorum of its operators (``sekimori.protocol.signing.verify_keyring_step``)."""

    chain: Annotated[list[SignedKeyring], msgspec.Meta(max_length=64)]


class ActionRequest(Message, tag="action"):
    """A remote action for this PC: the signed command, this device's Merkle path to
    the command's ``devices_root``, and the script or package bytes the command
    names by SHA-256 (empty otherwise). The agent verifies everything before acting
    and answers with ``action_result`` (always, refusals included)."""

    command: SignedCommand
    device_proof: Annotated[list[ProofStep], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    attachment: Annotated[bytes, msgspec.Meta(max_length=MAX_ATTACHMENT_BYTES)] = b""


class ErrorMessage(Message, tag="error"):
    code: str
    message: str
    retryable: bool


AgentMessage = (
    Enroll
    | Hello
    | EventBatch
    | Heartbeat
    | CommandResult
    | PolicyApplied
    | LiveState
    | LiveFrame
    | LiveControl
    | OperatorsApplied
    | ActionData
    | ActionResult
)
ServerMessage = (
    Enrolled
    | Welcome
    | Ack
    | Command
    | PolicyUpdate
    | LiveStart
    | LiveStop
    | LiveInput
    | ScreenBurst
    | OperatorsUpdate
    | ActionRequest
    | ErrorMessage
)
