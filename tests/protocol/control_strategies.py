"""Hypothesis strategies for remote control on the wire (``live_input`` down,
``live_control`` up) and its input events."""

from __future__ import annotations

from hypothesis import strategies as st

from sekimori.protocol.live_input import ButtonInput, KeyInput, PointerMove, WheelInput
from sekimori.protocol.messages import LiveControl, LiveInput

session_ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=64)
nonces = st.binary(min_size=16, max_size=16).map(bytes.hex)
keysyms = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
    min_size=1,
    max_size=32,
)
input_events = st.one_of(
    st.builds(KeyInput, keysym=keysyms, down=st.booleans()),
    st.builds(
        PointerMove,
        monitor=st.integers(1, 32),
        x=st.integers(0, 65535),
        y=st.integers(0, 65535),
    ),
    st.builds(ButtonInput, button=st.integers(1, 5), down=st.booleans()),
    st.builds(WheelInput, dx=st.integers(-10, 10), dy=st.integers(-10, 10)),
)
inputs = st.builds(
    LiveInput,
    session_id=session_ids,
    nonce=nonces,
    events=st.lists(input_events, min_size=1, max_size=64),
)
controls = st.builds(
    LiveControl,
    session_id=session_ids,
    state=st.sampled_from(["granted", "ended"]),
    until_us=st.integers(0, 2**63 - 1),
    reason=st.text(max_size=500),
)
