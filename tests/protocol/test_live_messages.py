"""Live view on the wire: ``live_start``/``live_stop`` down, ``live_state``/``live_frame``
up; round trips of every valid message and strict refusal of bad ones."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.protocol import (
    CAPABILITY_LIVE,
    MAX_LIVE_FRAME_BYTES,
    Hello,
    InvalidMessage,
    LiveFrame,
    LiveStart,
    LiveState,
    LiveStop,
    ProtocolError,
    decode_agent_message,
    decode_server_message,
    encode_message,
)

LIMIT = 4 * 1024 * 1024
session_ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=64)
formats = st.sampled_from(["jpeg", "webp", "png"])

starts = st.builds(
    LiveStart,
    session_id=session_ids,
    viewer=st.text(min_size=1, max_size=128),
    max_fps=st.floats(min_value=0.2, max_value=30),
    scale=st.floats(min_value=0.01, max_value=1),
    quality=st.integers(1, 100),
    format=formats,
    monitor=st.integers(0, 32),
    consent_required=st.booleans(),
    max_seconds=st.integers(1, 86400),
    record=st.booleans(),
)
stops = st.builds(LiveStop, session_id=session_ids, reason=st.text(max_size=500))
states = st.builds(
    LiveState,
    session_id=session_ids,
    state=st.sampled_from(["started", "refused", "stopped"]),
    reason=st.text(max_size=500),
)
frames = st.builds(
    LiveFrame,
    session_id=session_ids,
    seq=st.integers(0, 2**63 - 1),
    capture_us=st.integers(0, 2**63 - 1),
    monitor=st.integers(0, 32),
    width=st.integers(1, 65535),
    height=st.integers(1, 65535),
    format=formats,
    image=st.binary(min_size=1, max_size=2000),
)


@given(starts | stops)
def test_server_live_messages_round_trip(message: LiveStart | LiveStop) -> None:
    assert decode_server_message(encode_message(message), LIMIT) == message


@given(states | frames)
def test_agent_live_messages_round_trip(message: LiveState | LiveFrame) -> None:
    assert decode_agent_message(encode_message(message), LIMIT) == message


def test_the_capability_is_a_plain_name_in_hello() -> None:
    hello = Hello(
        agent_version="1", hostname="pc", os="linux", os_version="6", capabilities=["live"]
    )
    assert CAPABILITY_LIVE == "live"
    assert decode_agent_message(encode_message(hello), LIMIT) == hello


def _raw(t: str, **fields: Any) -> bytes:
    return msgspec.msgpack.encode({"v": 1, "t": t, **fields})


FRAME = {
    "session_id": "ab12",
    "seq": 1,
    "capture_us": 5,
    "monitor": 0,
    "width": 10,
    "height": 10,
    "format": "jpeg",
    "image": b"\xff\xd8",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image": b"x" * (MAX_LIVE_FRAME_BYTES + 1)}, "image"),
        ({"image": b""}, "image"),
        ({"format": "bmp"}, "format"),
        ({"seq": -1}, "seq"),
        ({"width": 0}, "width"),
        ({"monitor": 33}, "monitor"),
        ({"session_id": "../etc"}, "session_id"),
        ({"session_id": "a" * 65}, "session_id"),
        ({"capture_us": "now"}, "capture_us"),
    ],
)
def test_a_bad_frame_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMessage, match=field):
        decode_agent_message(_raw("live_frame", **{**FRAME, **change}), LIMIT)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_fps": 0}, "max_fps"),
        ({"max_fps": 100}, "max_fps"),
        ({"scale": 0}, "scale"),
        ({"scale": 2}, "scale"),
        ({"quality": 0}, "quality"),
        ({"viewer": ""}, "viewer"),
        ({"viewer": "x" * 129}, "viewer"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"consent_required": "yes"}, "consent_required"),
    ],
)
def test_a_bad_start_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    start = {"session_id": "ab", "viewer": "alice", **change}
    with pytest.raises(InvalidMessage, match=field):
        decode_server_message(_raw("live_start", **start), LIMIT)


def test_a_state_outside_the_three_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="state"):
        decode_agent_message(_raw("live_state", session_id="ab", state="paused"), LIMIT)


def test_live_messages_go_one_way_only() -> None:
    """A peer cannot send the other side's message: an agent cannot start a session."""
    start = encode_message(LiveStart(session_id="ab", viewer="alice"))
    with pytest.raises(InvalidMessage):
        decode_agent_message(start, LIMIT)
    frame = encode_message(LiveFrame(**FRAME))  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage):
        decode_server_message(frame, LIMIT)


@given(st.binary(max_size=200))
def test_garbage_is_a_protocol_error_and_nothing_else(data: bytes) -> None:
    for decode in (decode_agent_message, decode_server_message):
        with contextlib.suppress(ProtocolError):
            decode(data, LIMIT)
