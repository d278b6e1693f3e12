"""Encoding and strict decoding of frames and event batches."""

from __future__ import annotations

import zlib
from typing import Final, Literal, TypeVar

import msgspec

from sekimori.protocol.errors import FrameTooLarge, InvalidMessage, UnsupportedVersion
from sekimori.protocol.events import EVENT_KINDS, Event, Payload
from sekimori.protocol.messages import (
    PROTOCOL_VERSION,
    AgentMessage,
    EventBatch,
    Message,
    ServerMessage,
)

__all__ = [
    "SUPPORTED_VERSIONS",
    "decode_agent_message",
    "decode_batch_events",
    "decode_payload",
    "decode_server_message",
    "encode_batch_body",
    "encode_message",
]

# msgspec raises UnicodeDecodeError (not DecodeError) for a string that is not UTF-8.
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError)

SUPPORTED_VERSIONS: Final = frozenset({PROTOCOL_VERSION})
# Sequence numbers are stored as signed 64-bit integers.
_MAX_SEQ: Final = 2**63 - 1

M = TypeVar("M")

_encoder = msgspec.msgpack.Encoder()


class _Header(msgspec.Struct):
    v: int
    t: str


_header_decoder = msgspec.msgpack.Decoder(_Header)
_agent_decoder: msgspec.msgpack.Decoder[AgentMessage] = msgspec.msgpack.Decoder(AgentMessage)
_server_decoder: msgspec.msgpack.Decoder[ServerMessage] = msgspec.msgpack.Decoder(ServerMessage)
_events_decoder = msgspec.msgpack.Decoder(list[Event])
_payload_decoders = {kind: msgspec.msgpack.Decoder(t) for kind, t in EVENT_KINDS.items()}


def encode_message(message: Message) -> bytes:
    return _encoder.encode(message)


def _decode(data: bytes, decoder: msgspec.msgpack.Decoder[M], max_bytes: int) -> M:
    if len(data) > max_bytes:
        raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        header = _header_decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise InvalidMessage(f"malformed frame: {exc}") from None
    if header.v not in SUPPORTED_VERSIONS:
        spoken = ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
        raise UnsupportedVersion(
            f"protocol version {header.v} is not supported; this peer speaks {spoken}"
        )
    try:
        return decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise InvalidMessage(f"invalid {header.t!r} message: {exc}") from None


def decode_agent_message(data: bytes, max_bytes: int) -> AgentMessage:
    """Decode a frame sent by an agent. Raises ProtocolError (never anything else)."""
    return _decode(data, _agent_decoder, max_bytes)


def decode_server_message(data: bytes, max_bytes: int) -> ServerMessage:
    """Decode a frame sent by the server. Raises ProtocolError (never anything else)."""
    return _decode(data, _server_decoder, max_bytes)


def encode_batch_body(
    events: list[Event], compress: bool = True
) -> tuple[Literal["zlib", "none"], bytes]:
    raw = _encoder.encode(events)
    if compress:
        # Level 1: on event logs it gives most of the size win at a fraction of the CPU.
        return "zlib", zlib.compress(raw, 1)
    return "none", raw


def _inflate(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # One byte past the limit tells "too large" from "exactly the limit"; it also
        # keeps max_length above 0, which zlib would read as "no limit".
        raw = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise InvalidMessage(f"batch body is not valid zlib data: {exc}") from None
    if len(raw) > max_bytes or inflater.unconsumed_tail:
        raise FrameTooLarge(f"batch body inflates beyond the limit of {max_bytes} bytes")
    if not inflater.eof:
        raise InvalidMessage("batch body is truncated zlib data")
    if inflater.unused_data:
        # The 'none' path refuses trailing bytes (msgspec does); so does this one.
        raise InvalidMessage("batch body has data after the end of the zlib stream")
    return raw


def decode_batch_events(
    batch: EventBatch, *, max_inflated_bytes: int, max_events: int
) -> list[Event]:
    """Inflate and decode a batch's events and check its sequence numbers.

    Sequence numbers must be positive and strictly increasing, lie within the
    batch's declared [first_seq, last_seq], and their number must match ``count``.
    Raises ProtocolError.
    """
    if batch.count > max_events:
        raise FrameTooLarge(f"batch of {batch.count} events exceeds the limit of {max_events}")
    if batch.compression == "zlib":
        raw = _inflate(batch.body, max_inflated_bytes)
    else:
        if len(batch.body) > max_inflated_bytes:
            raise FrameTooLarge(
                f"batch body of {len(batch.body)} bytes exceeds the limit of {max_inflated_bytes}"
            )
        raw = batch.body
    try:
        events = _events_decoder.decode(raw)
    except _DECODE_ERRORS as exc:
        raise InvalidMessage(f"invalid batch body: {exc}") from None
    if len(events) != batch.count:
        raise InvalidMessage(f"batch declares {batch.count} events but holds {len(events)}")
    if not events:
        raise InvalidMessage("empty batch")
    if batch.first_seq < 1 or batch.last_seq < batch.first_seq:
        raise InvalidMessage(f"bad batch range {batch.first_seq}..{batch.last_seq}")
    if events[0].seq != batch.first_seq or events[-1].seq != batch.last_seq:
        raise InvalidMessage(
            f"batch declares {batch.first_seq}..{batch.last_seq} "
            f"but holds {events[0].seq}..{events[-1].seq}"
        )
    previous = 0
    for event in events:
        if event.seq > _MAX_SEQ:
            raise InvalidMessage(f"sequence number {event.seq} is out of range")
        if event.seq <= previous:
            raise InvalidMessage(f"sequence numbers not increasing at seq {event.seq}")
        previous = event.seq
    return events


def decode_payload(kind: str, payload: msgspec.Raw) -> Payload:
    """Validate an event's payload against its kind. Raises InvalidMessage."""
    decoder = _payload_decoders.get(kind)
    if decoder is None:
        raise InvalidMessage(f"unknown event kind {kind!r}")
    try:
        return decoder.decode(payload)
    except _DECODE_ERRORS as exc:
        raise InvalidMessage(f"invalid {kind!r} payload: {exc}") from None
