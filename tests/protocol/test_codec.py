"""The wire codec: round trips, and strict refusal of everything else.

The decoders face bytes from the network, so the property tests feed them arbitrary
bytes and arbitrary msgpack structures and require that nothing but a ProtocolError
ever comes out.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import zlib
from typing import Any, Literal, get_args

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sekimori.protocol import (
    EVENT_KINDS,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Ack,
    AgentMessage,
    Command,
    CommandResult,
    Enroll,
    Enrolled,
    ErrorMessage,
    Event,
    EventBatch,
    FrameTooLarge,
    Heartbeat,
    Hello,
    InvalidMessage,
    Payload,
    PolicyApplied,
    PolicyUpdate,
    ProtocolError,
    Rejection,
    ScreenBurst,
    ServerMessage,
    UnsupportedVersion,
    Welcome,
    decode_agent_message,
    decode_batch_events,
    decode_payload,
    decode_server_message,
    encode_batch_body,
    encode_message,
)
from sekimori.protocol.events import (
    AgentLog,
    AgentStarted,
    AgentStopped,
    CollectorHealth,
    OutboxDropped,
)
from sekimori.protocol.events.screen import ScreenFrame
from tests.protocol import action_strategies as actions
from tests.protocol import control_strategies as control
from tests.protocol import test_live_messages as live

LIMIT = 1 << 20

# msgpack carries integers in [-2**63, 2**64 - 1].
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
text = st.text(max_size=40)
floats = st.floats(allow_nan=False)

AGENT_TAGS = ["enroll", "hello", "batch", "heartbeat", "command_result", "policy_applied"]
SERVER_TAGS = ["enrolled", "welcome", "ack", "command", "policy", "error"]


# ---- strategies ---------------------------------------------------------------------

msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | ints | floats | text | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(text, children, max_size=6),
    max_leaves=12,
)
# Cheap payloads for event lists: the batch code never looks inside them.
small_payloads = st.dictionaries(
    st.text(max_size=8), st.none() | i64 | st.text(max_size=20), max_size=3
).map(msgspec.msgpack.encode)

enrolls = st.builds(
    Enroll,
    token=text,
    csr_pem=text,
    hostname=text,
    os=text,
    os_version=text,
    agent_version=text,
    group=st.none() | text,
)
hellos = st.builds(
    Hello,
    agent_version=text,
    hostname=text,
    os=text,
    os_version=text,
    capabilities=st.lists(st.text(max_size=64), max_size=32),
)
batches = st.builds(
    EventBatch,
    first_seq=ints,
    last_seq=ints,
    count=ints,
    compression=st.sampled_from(["zlib", "none"]),
    body=st.binary(max_size=200),
)
heartbeats = st.builds(Heartbeat, outbox_events=ints, outbox_bytes=ints, dropped_total=ints)
command_results = st.builds(
    CommandResult,
    command_id=text,
    ok=st.booleans(),
    detail=st.dictionaries(text, st.none() | st.booleans() | ints | floats | text, max_size=5),
)
policy_applieds = st.builds(
    PolicyApplied,
    version=st.integers(min_value=0, max_value=2**31 - 1),
    ok=st.booleans(),
    error=st.text(max_size=2000),
)
agent_messages: st.SearchStrategy[AgentMessage] = st.one_of(
    enrolls,
    hellos,
    batches,
    heartbeats,
    command_results,
    policy_applieds,
    live.states,
    live.frames,
    actions.operators_applieds,
    actions.datas,
    actions.results,
    control.controls,
)

server_messages: st.SearchStrategy[ServerMessage] = st.one_of(
    st.builds(Enrolled, device_id=text, certificate_pem=text, operators=st.binary(max_size=80)),
    st.builds(
        Welcome,
        device_id=text,
        server_version=text,
        heartbeat_seconds=floats,
        max_frame_bytes=ints,
        max_batch_events=ints,
        acked_seq=ints,
    ),
    st.builds(
        Ack,
        through_seq=ints,
        stored=ints,
        duplicates=ints,
        rejected=st.lists(st.builds(Rejection, seq=ints, reason=text), max_size=4),
    ),
    st.builds(Command, command_id=text, name=st.just("status")),
    st.builds(
        PolicyUpdate,
        group=st.text(max_size=255),
        version=st.integers(min_value=0, max_value=2**31 - 1),
        document=st.binary(max_size=200),
    ),
    live.starts,
    live.stops,
    control.inputs,
    actions.requests,
    actions.operators_updates,
    st.builds(ErrorMessage, code=text, message=text, retryable=st.booleans()),
)


FIELD_NAMES = [
    "token",
    "csr_pem",
    "hostname",
    "os",
    "group",
    "first_seq",
    "last_seq",
    "count",
    "compression",
    "body",
    "detail",
    "ok",
    "rejected",
    "through_seq",
    "name",
    "retryable",
    "extra",
]


@st.composite
def _frame_like(draw: st.DrawFn, tags: list[str]) -> dict[str, Any]:
    """Maps that look like frames (a real tag, mostly the right version) with random
    fields, so the fuzzing reaches the typed decoders and not only the header check."""
    frame: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(FIELD_NAMES), msgpack_values, max_size=8)
    )
    frame["v"] = draw(st.just(PROTOCOL_VERSION) | msgpack_values)
    frame["t"] = draw(st.sampled_from(tags) | msgpack_values)
    return frame


@st.composite
def event_lists(draw: st.DrawFn, min_size: int = 1) -> list[Event]:
    """Events with positive, strictly increasing sequence numbers (gaps allowed)."""
    gaps = draw(st.lists(st.integers(min_value=1, max_value=1000), min_size=min_size, max_size=30))
    start = draw(st.integers(min_value=0, max_value=2**40))
    events = []
    seq = start
    for gap in gaps:
        seq += gap
        payload = draw(small_payloads)
        events.append(
            Event(
                seq,
                draw(i64),
                draw(st.sampled_from([*EVENT_KINDS, "x.unknown"])),
                draw(st.none() | st.text(max_size=10)),
                msgspec.Raw(payload),
            )
        )
    return events


def _batch(
    events: list[Event],
    *,
    compress: bool = True,
    first_seq: int | None = None,
    last_seq: int | None = None,
    count: int | None = None,
) -> EventBatch:
    compression, body = encode_batch_body(events, compress=compress)
    return EventBatch(
        first_seq=events[0].seq if first_seq is None else first_seq,
        last_seq=events[-1].seq if last_seq is None else last_seq,
        count=len(events) if count is None else count,
        compression=compression,
        body=body,
    )


def _decode_batch(
    batch: EventBatch, *, max_inflated: int = LIMIT, max_events: int = 1000
) -> list[Event]:
    return decode_batch_events(batch, max_inflated_bytes=max_inflated, max_events=max_events)


def _ev(seq: int) -> Event:
    return Event(seq, 1_700_000_000_000_000, "agent.stopped", None, msgspec.Raw(b"\x80"))


def _same_events(a: list[Event], b: list[Event]) -> bool:
    def key(e: Event) -> tuple[int, int, str, str | None, bytes]:
        return (e.seq, e.time_us, e.kind, e.os_user, bytes(e.payload))

    return [key(e) for e in a] == [key(e) for e in b]


# ---- round trips --------------------------------------------------------------------


@given(agent_messages)
def test_every_agent_message_round_trips(message: AgentMessage) -> None:
    frame = encode_message(message)
    assert decode_agent_message(frame, len(frame)) == message


@given(server_messages)
def test_every_server_message_round_trips(message: ServerMessage) -> None:
    frame = encode_message(message)
    assert decode_server_message(frame, len(frame)) == message


def test_the_round_trip_strategies_cover_every_message_type() -> None:
    # A new message type must get a strategy above (and so a round trip).
    assert {a.__name__ for a in get_args(AgentMessage)} == {
        "Enroll",
        "Hello",
        "EventBatch",
        "Heartbeat",
        "CommandResult",
        "PolicyApplied",
        "LiveState",
        "LiveFrame",
        "LiveControl",
        "OperatorsApplied",
        "ActionData",
        "ActionResult",
    }
    assert {s.__name__ for s in get_args(ServerMessage)} == {
        "Enrolled",
        "Welcome",
        "Ack",
        "Command",
        "PolicyUpdate",
        "LiveStart",
        "LiveStop",
        "LiveInput",
        "ScreenBurst",
        "OperatorsUpdate",
        "ActionRequest",
        "ErrorMessage",
    }


def test_frame_is_a_map_with_version_and_tag() -> None:
    frame = encode_message(Hello(agent_version="1", hostname="h", os="linux", os_version="6"))
    raw = msgspec.msgpack.decode(frame)
    assert raw["v"] == PROTOCOL_VERSION
    assert raw["t"] == "hello"


def test_unknown_extra_fields_are_ignored() -> None:
    frame = msgspec.msgpack.encode(
        {
            "v": 1,
            "t": "heartbeat",
            "outbox_events": 1,
            "outbox_bytes": 2,
            "dropped_total": 3,
            "added_in_a_later_minor": [1, 2],
        }
    )
    assert decode_agent_message(frame, LIMIT) == Heartbeat(
        outbox_events=1, outbox_bytes=2, dropped_total=3
    )


# ---- refusing garbage -----------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    for decode in (decode_agent_message, decode_server_message):
        with contextlib.suppress(ProtocolError):
            decode(data, LIMIT)


@settings(max_examples=150)
@given(msgpack_values | _frame_like(AGENT_TAGS) | _frame_like(SERVER_TAGS))
def test_arbitrary_msgpack_raises_only_protocol_errors(value: Any) -> None:
    data = msgspec.msgpack.encode(value)
    for decode in (decode_agent_message, decode_server_message):
        with contextlib.suppress(ProtocolError):
            decode(data, LIMIT)


def test_agent_decoder_refuses_server_messages_and_vice_versa() -> None:
    ack = encode_message(Ack(through_seq=1, stored=1, duplicates=0))
    with pytest.raises(InvalidMessage, match="'ack'"):
        decode_agent_message(ack, LIMIT)
    hello = encode_message(Hello(agent_version="1", hostname="h", os="o", os_version="v"))
    with pytest.raises(InvalidMessage, match="'hello'"):
        decode_server_message(hello, LIMIT)


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x93\x01\x02\x03", b"\x81\xa1v\x01"])
def test_malformed_frames_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidMessage, match="malformed frame"):
        decode_agent_message(data, LIMIT)


@pytest.mark.parametrize("version", [0, 2, -1, 2**64 - 1])
def test_unknown_version_is_refused_naming_the_supported_one(version: int) -> None:
    frame = msgspec.msgpack.encode({"v": version, "t": "hello", "agent_version": "x"})
    for decode in (decode_agent_message, decode_server_message):
        with pytest.raises(UnsupportedVersion) as info:
            decode(frame, LIMIT)
        assert f"speaks {PROTOCOL_VERSION}" in str(info.value)
        assert str(version) in str(info.value)
        assert info.value.code == "unsupported_version"
        assert info.value.retryable is False


def test_supported_versions_is_the_current_one() -> None:
    assert frozenset({PROTOCOL_VERSION}) == SUPPORTED_VERSIONS


@pytest.mark.parametrize(
    ("frame", "path"),
    [
        (
            {
                "v": 1,
                "t": "batch",
                "first_seq": "1",
                "last_seq": 1,
                "count": 1,
                "compression": "none",
                "body": b"",
            },
            "$.first_seq",
        ),
        (
            {
                "v": 1,
                "t": "batch",
                "first_seq": 1,
                "last_seq": 1,
                "count": 1,
                "compression": "gzip",
                "body": b"",
            },
            "$.compression",
        ),
        (
            {
                "v": 1,
                "t": "command_result",
                "command_id": "c",
                "ok": True,
                "detail": {"k": [1]},
            },
            "$.detail[...]",
        ),
        (
            {
                "v": 1,
                "t": "hello",
                "agent_version": 1,
                "hostname": "h",
                "os": "o",
                "os_version": "v",
            },
            "$.agent_version",
        ),
    ],
)
def test_wrong_field_types_name_the_field_path(frame: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_agent_message(msgspec.msgpack.encode(frame), LIMIT)
    assert f"`{path}`" in str(info.value)
    assert f"invalid {frame['t']!r} message" in str(info.value)
    assert info.value.code == "invalid_message"


def test_wrong_nested_field_type_names_the_nested_path() -> None:
    frame = msgspec.msgpack.encode(
        {
            "v": 1,
            "t": "ack",
            "through_seq": 1,
            "stored": 1,
            "duplicates": 0,
            "rejected": [{"seq": 1, "reason": "ok"}, {"seq": "two", "reason": "bad"}],
        }
    )
    with pytest.raises(InvalidMessage, match=r"\$\.rejected\[1\]\.seq"):
        decode_server_message(frame, LIMIT)


def test_missing_field_is_named() -> None:
    frame = msgspec.msgpack.encode({"v": 1, "t": "enrolled", "device_id": "d"})
    with pytest.raises(InvalidMessage, match="certificate_pem"):
        decode_server_message(frame, LIMIT)


def test_unknown_tag_is_invalid() -> None:
    frame = msgspec.msgpack.encode({"v": 1, "t": "shutdown"})
    with pytest.raises(InvalidMessage, match="'shutdown'"):
        decode_agent_message(frame, LIMIT)


def test_oversized_frame_is_refused_before_decoding() -> None:
    frame = encode_message(Heartbeat(outbox_events=1, outbox_bytes=2, dropped_total=0))
    assert decode_agent_message(frame, len(frame)) is not None  # exactly the limit is fine
    with pytest.raises(FrameTooLarge) as info:
        decode_agent_message(frame, len(frame) - 1)
    assert info.value.code == "too_large"
    assert str(len(frame)) in str(info.value)
    # Refused on size alone, even when the bytes are garbage.
    with pytest.raises(FrameTooLarge):
        decode_server_message(b"\xc1" * 11, 10)


def test_error_hierarchy() -> None:
    for cls in (FrameTooLarge, UnsupportedVersion, InvalidMessage):
        assert issubclass(cls, ProtocolError)
        err = cls("the reason")
        assert err.message == "the reason"
        assert str(err) == "the reason"
        assert err.retryable is False
    assert len({FrameTooLarge.code, UnsupportedVersion.code, InvalidMessage.code}) == 3


# ---- event batches --------------------------------------------------------------------


@given(event_lists(), st.booleans())
def test_batch_round_trip(events: list[Event], compress: bool) -> None:
    batch = _batch(events, compress=compress)
    assert batch.compression == ("zlib" if compress else "none")
    # Through the whole wire path: frame, then body.
    frame = encode_message(batch)
    received = decode_agent_message(frame, len(frame))
    assert isinstance(received, EventBatch)
    assert _same_events(_decode_batch(received, max_events=len(events)), events)


def test_compressed_body_is_smaller_for_repetitive_events() -> None:
    events = [_ev(seq) for seq in range(1, 501)]
    _, plain = encode_batch_body(events, compress=False)
    _, packed = encode_batch_body(events, compress=True)
    assert len(packed) < len(plain) / 3
    assert zlib.decompress(packed) == plain


def test_batch_with_more_events_than_allowed_is_too_large() -> None:
    events = [_ev(seq) for seq in range(1, 6)]
    assert len(_decode_batch(_batch(events), max_events=5)) == 5
    with pytest.raises(FrameTooLarge, match="5 events exceeds the limit of 4"):
        _decode_batch(_batch(events), max_events=4)


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("declared", [0, 2, 4])
def test_count_mismatch_is_invalid(compress: bool, declared: int) -> None:
    batch = _batch([_ev(1), _ev(2), _ev(3)], compress=compress, count=declared)
    with pytest.raises(InvalidMessage, match=f"declares {declared} events but holds 3"):
        _decode_batch(batch)


@pytest.mark.parametrize(
    ("seqs", "match"),
    [
        ([1, 1], "not increasing at seq 1"),
        ([1, 3, 2], "not increasing at seq 2"),
        ([1, 2, 2, 3], "not increasing at seq 2"),
        ([5, 4], "bad batch range 5..4"),
    ],
)
def test_non_increasing_seqs_are_invalid(seqs: list[int], match: str) -> None:
    # The declared range is the ends of the list, so only the order is wrong.
    with pytest.raises(InvalidMessage, match=match):
        _decode_batch(_batch([_ev(s) for s in seqs]))


@given(event_lists(min_size=2), st.data())
def test_any_repeated_or_decreasing_seq_is_invalid(
    events: list[Event], data: st.DataObject
) -> None:
    i = data.draw(st.integers(min_value=1, max_value=len(events) - 1))
    back = data.draw(st.integers(min_value=0, max_value=events[i - 1].seq - 1))
    events[i].seq = events[i - 1].seq - back
    first, last = events[0].seq, events[-1].seq
    with pytest.raises(InvalidMessage):
        _decode_batch(_batch(events, first_seq=first, last_seq=last))


@pytest.mark.parametrize(
    ("first", "last", "match"),
    [
        (2, 3, "declares 2..3 but holds 1..3"),
        (1, 4, "declares 1..4 but holds 1..3"),
        (1, 2, "declares 1..2 but holds 1..3"),
        (3, 1, "bad batch range 3..1"),
        (0, 3, "bad batch range 0..3"),
        (-5, 3, "bad batch range -5..3"),
    ],
)
def test_declared_range_must_match(first: int, last: int, match: str) -> None:
    batch = _batch([_ev(1), _ev(2), _ev(3)], first_seq=first, last_seq=last)
    with pytest.raises(InvalidMessage, match=match):
        _decode_batch(batch)


def test_seq_zero_is_invalid() -> None:
    with pytest.raises(InvalidMessage, match="bad batch range"):
        _decode_batch(_batch([_ev(0), _ev(1)]))


@pytest.mark.parametrize("compress", [True, False])
def test_empty_batch_is_invalid(compress: bool) -> None:
    compression, body = encode_batch_body([], compress=compress)
    batch = EventBatch(first_seq=1, last_seq=1, count=0, compression=compression, body=body)
    with pytest.raises(InvalidMessage, match="empty batch"):
        _decode_batch(batch)


def test_zlib_bomb_is_refused() -> None:
    limit = 64 * 1024
    bomb = zlib.compress(b"\x00" * (100 * limit), 9)
    assert len(bomb) < limit // 10
    batch = EventBatch(first_seq=1, last_seq=1, count=1, compression="zlib", body=bomb)
    with pytest.raises(FrameTooLarge, match=f"beyond the limit of {limit}"):
        _decode_batch(batch, max_inflated=limit)


@given(event_lists(), st.data())
def test_inflated_size_limit_is_exact(events: list[Event], data: st.DataObject) -> None:
    _, raw = encode_batch_body(events, compress=False)
    for compress in (True, False):
        batch = _batch(events, compress=compress)
        assert _same_events(_decode_batch(batch, max_inflated=len(raw)), events)
        below = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        with pytest.raises(FrameTooLarge):
            _decode_batch(batch, max_inflated=below)


@given(event_lists(), st.data())
def test_truncated_zlib_is_invalid(events: list[Event], data: st.DataObject) -> None:
    batch = _batch(events, compress=True)
    cut = data.draw(st.integers(min_value=0, max_value=len(batch.body) - 1))
    truncated = EventBatch(
        first_seq=batch.first_seq,
        last_seq=batch.last_seq,
        count=batch.count,
        compression="zlib",
        body=batch.body[:cut],
    )
    with pytest.raises(InvalidMessage):
        _decode_batch(truncated)


def test_truncated_zlib_message() -> None:
    batch = _batch([_ev(s) for s in range(1, 50)], compress=True)
    cut = EventBatch(first_seq=1, last_seq=49, count=49, compression="zlib", body=batch.body[:-6])
    with pytest.raises(InvalidMessage, match="truncated"):
        _decode_batch(cut)


def test_data_after_the_zlib_stream_is_invalid() -> None:
    batch = _batch([_ev(1)], compress=True)
    padded = EventBatch(
        first_seq=1, last_seq=1, count=1, compression="zlib", body=batch.body + b"junk"
    )
    with pytest.raises(InvalidMessage):
        _decode_batch(padded)


@pytest.mark.parametrize(
    ("compression", "body", "match"),
    [
        ("zlib", b"this is not zlib", "not valid zlib"),
        ("none", b"\xc1", "invalid batch body"),
        ("none", msgspec.msgpack.encode({"seq": 1}), "invalid batch body"),
        ("none", msgspec.msgpack.encode([[1, 2, "k"]]), "invalid batch body"),
        ("none", msgspec.msgpack.encode([["1", 2, "k", None, 0]]), r"\$\[0\]\[0\]"),
        ("zlib", zlib.compress(b"\xc1"), "invalid batch body"),
    ],
)
def test_garbage_body_is_invalid(
    compression: Literal["zlib", "none"], body: bytes, match: str
) -> None:
    batch = EventBatch(first_seq=1, last_seq=1, count=1, compression=compression, body=body)
    with pytest.raises(InvalidMessage, match=match):
        _decode_batch(batch)


@settings(max_examples=300)
@given(
    batches,
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(zlib.compress),
        msgpack_values.map(lambda v: zlib.compress(msgspec.msgpack.encode(v))),
        msgpack_values.map(msgspec.msgpack.encode),
    ),
)
def test_arbitrary_batches_raise_only_protocol_errors(batch: EventBatch, body: bytes) -> None:
    batch.body = body
    try:
        events = _decode_batch(batch, max_inflated=4096)
    except ProtocolError:
        return
    # Whatever is accepted satisfies the documented invariants.
    assert len(events) == batch.count
    assert events[0].seq == batch.first_seq >= 1
    assert events[-1].seq == batch.last_seq
    assert all(a.seq < b.seq for a, b in itertools.pairwise(events))


# ---- payloads -------------------------------------------------------------------------

VALID_PAYLOADS: dict[str, Payload] = {
    "agent.started": AgentStarted(version="0.1.0", pid=42, hostname="pc-7"),
    "agent.stopped": AgentStopped(reason="signal"),
    "agent.log": AgentLog(level="warning", source="collector.proc", message="slow"),
    "agent.outbox_dropped": OutboxDropped(count=3, first_seq=1, last_seq=3, bytes=300),
    "agent.collector_health": CollectorHealth(collector="processes", status="failed", reason="x"),
}


def test_payload_cases_match_the_registry() -> None:
    assert set(VALID_PAYLOADS) <= set(EVENT_KINDS)
    for kind, payload in VALID_PAYLOADS.items():
        assert type(payload) is EVENT_KINDS[kind]


def test_screen_frames_out_of_range_are_refused() -> None:
    good = ScreenFrame(
        monitor=0, width=960, height=540, screen_width=1920, screen_height=1080,
        format="jpeg", image=b"\xff\xd8", sha256="0" * 64, trigger="interval",
    )  # fmt: skip
    assert decode_payload("screen.frame", msgspec.Raw(msgspec.msgpack.encode(good))) == good
    for bad in ({"width": 0}, {"sha256": "xyz"}, {"monitor": -1}, {"format": "gif"}):
        raw = msgspec.to_builtins(good) | bad
        with pytest.raises(InvalidMessage, match=r"screen\.frame"):
            decode_payload("screen.frame", msgspec.Raw(msgspec.msgpack.encode(raw)))


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS))
@settings(
    max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(data=st.data())
def test_every_registered_kind_round_trips(kind: str, data: st.DataObject) -> None:
    """Any payload a collector can build for a kind decodes back to itself."""
    payload = data.draw(st.from_type(EVENT_KINDS[kind]))
    try:
        raw = msgspec.msgpack.encode(payload)
    except OverflowError:
        assume(False)  # beyond msgpack's 64-bit integers: not a real payload
    assert decode_payload(kind, msgspec.Raw(raw)) == payload


@pytest.mark.parametrize("kind", sorted(VALID_PAYLOADS))
def test_payload_round_trip_through_a_batch(kind: str) -> None:
    payload = VALID_PAYLOADS[kind]
    event = Event(7, 1, kind, "alice", msgspec.Raw(msgspec.msgpack.encode(payload)))
    (received,) = _decode_batch(_batch([event]))
    decoded = decode_payload(received.kind, received.payload)
    assert type(decoded) is EVENT_KINDS[kind]
    assert decoded == payload


@pytest.mark.parametrize("kind", sorted(VALID_PAYLOADS))
def test_payload_with_wrong_field_type_is_invalid(kind: str) -> None:
    fields = msgspec.to_builtins(VALID_PAYLOADS[kind])
    first = next(iter(fields))
    fields[first] = [fields[first]]
    with pytest.raises(InvalidMessage, match=rf"invalid '{kind}' payload: .*\$\.{first}"):
        decode_payload(kind, msgspec.Raw(msgspec.msgpack.encode(fields)))


@pytest.mark.parametrize("kind", sorted(VALID_PAYLOADS))
def test_payload_with_unknown_field_is_invalid(kind: str) -> None:
    fields = msgspec.to_builtins(VALID_PAYLOADS[kind])
    fields["smuggled"] = 1
    with pytest.raises(InvalidMessage, match="smuggled"):
        decode_payload(kind, msgspec.Raw(msgspec.msgpack.encode(fields)))


def test_agent_log_level_is_restricted() -> None:
    raw = msgspec.msgpack.encode({"level": "critical", "source": "s", "message": "m"})
    with pytest.raises(InvalidMessage, match=r"\$\.level"):
        decode_payload("agent.log", msgspec.Raw(raw))


def test_unknown_kind_is_invalid() -> None:
    with pytest.raises(InvalidMessage, match=re.escape("unknown event kind 'agent.exploded'")):
        decode_payload("agent.exploded", msgspec.Raw(msgspec.msgpack.encode({})))


@settings(max_examples=200)
@given(st.sampled_from(sorted(EVENT_KINDS)) | text, st.binary(max_size=100) | msgpack_values)
def test_arbitrary_payloads_raise_only_invalid_message(kind: str, value: Any) -> None:
    raw = value if isinstance(value, bytes) else msgspec.msgpack.encode(value)
    try:
        decoded = decode_payload(kind, msgspec.Raw(raw))
    except InvalidMessage:
        return
    assert type(decoded) is EVENT_KINDS[kind]


def _msgpack_str(raw: bytes) -> bytes:
    """A msgpack str (str 8) holding ``raw`` as is: msgpack does not check UTF-8."""
    return b"\xd9" + bytes([len(raw)]) + raw


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=40).filter(lambda b: not _is_utf8(b)))
def test_strings_that_are_not_utf8_are_protocol_errors(raw: bytes) -> None:
    # msgspec raises UnicodeDecodeError, not DecodeError, for these: a frame, a batch
    # body or a payload carrying one must still be refused as a protocol error (an
    # event is quarantined, not left to break the connection on every resend).
    hello = (
        b"\x85\xa1v\x01\xa1t\xa5hello\xadagent_version"
        + _msgpack_str(raw)
        + b"\xa8hostname\xa1h\xa2os\xa1o"
    )
    with pytest.raises(ProtocolError):
        decode_agent_message(hello, LIMIT)
    body = b"\x91\x95\x01\x01" + _msgpack_str(raw) + b"\xc0\x80"
    with pytest.raises(ProtocolError):
        _decode_batch(EventBatch(first_seq=1, last_seq=1, count=1, compression="none", body=body))
    payload = b"\x82\xa5level\xa4info\xa7message" + _msgpack_str(raw)
    with pytest.raises(InvalidMessage):
        decode_payload("agent.log", msgspec.Raw(payload))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@given(st.integers(1, 2**63 - 1), st.text(max_size=128))
def test_screen_burst_round_trips(alert_id: int, rule_id: str) -> None:
    message = ScreenBurst(alert_id=alert_id, rule_id=rule_id)
    assert decode_server_message(encode_message(message), LIMIT) == message


@pytest.mark.parametrize("fields", [{"alert_id": 0}, {"rule_id": "r" * 129}, {"alert_id": "1"}])
def test_bad_screen_bursts_are_refused(fields: dict[str, Any]) -> None:
    frame = {"v": 1, "t": "screen_burst", "alert_id": 1, "rule_id": "builtin.x"} | fields
    with pytest.raises(InvalidMessage, match="screen_burst"):
        decode_server_message(msgspec.msgpack.encode(frame), LIMIT)
