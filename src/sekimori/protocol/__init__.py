"""The agent<->server wire protocol: typed, versioned messages and their codec.

Imported by both agent and server; imports neither.
"""

from sekimori.protocol.codec import (
    SUPPORTED_VERSIONS,
    decode_agent_message,
    decode_batch_events,
    decode_payload,
    decode_server_message,
    encode_batch_body,
    encode_message,
)
from sekimori.protocol.errors import (
    FrameTooLarge,
    InvalidMessage,
    ProtocolError,
    UnsupportedVersion,
)
from sekimori.protocol.events import EVENT_KINDS, Event, Payload
from sekimori.protocol.messages import (
    CAPABILITY_POLICY,
    PROTOCOL_VERSION,
    Ack,
    AgentMessage,
    Command,
    CommandResult,
    Enroll,
    Enrolled,
    ErrorMessage,
    EventBatch,
    Heartbeat,
    Hello,
    PolicyApplied,
    PolicyUpdate,
    Rejection,
    ServerMessage,
    Welcome,
)
from sekimori.protocol.policy_document import (
    InvalidPolicy,
    decode_policy_document,
    encode_policy_document,
)

__all__ = [
    "CAPABILITY_POLICY",
    "EVENT_KINDS",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Ack",
    "AgentMessage",
    "Command",
    "CommandResult",
    "Enroll",
    "Enrolled",
    "ErrorMessage",
    "Event",
    "EventBatch",
    "FrameTooLarge",
    "Heartbeat",
    "Hello",
    "InvalidMessage",
    "InvalidPolicy",
    "Payload",
    "PolicyApplied",
    "PolicyUpdate",
    "ProtocolError",
    "Rejection",
    "ServerMessage",
    "UnsupportedVersion",
    "Welcome",
    "decode_agent_message",
    "decode_batch_events",
    "decode_payload",
    "decode_policy_document",
    "decode_server_message",
    "encode_batch_body",
    "encode_message",
    "encode_policy_document",
]
