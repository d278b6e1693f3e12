"""Remote control on the wire: ``live_input`` events are validated strictly (kinds,
keysym names, coordinates, buttons, wheel steps, how many), from the agent's frames
and from the console page's JSON alike; every valid message round-trips."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given

from sekimori.protocol import InvalidMessage, decode_server_message, encode_message
from sekimori.protocol.live_input import (
    MAX_INPUT_EVENTS,
    ButtonInput,
    KeyInput,
    PointerMove,
    WheelInput,
    decode_input_events,
)
from sekimori.protocol.messages import LiveInput
from tests.protocol.control_strategies import input_events, inputs

NONCE = "0123456789abcdef0123456789abcdef"


@given(inputs)
def test_live_input_round_trips(message: LiveInput) -> None:
    frame = encode_message(message)
    assert decode_server_message(frame, len(frame)) == message


@given(input_events)
def test_the_pages_json_decodes_to_the_same_events(event: Any) -> None:
    assert decode_input_events(msgspec.json.encode([event])) == [event]


def test_the_pages_json_as_written_by_live_js() -> None:
    text = json.dumps(
        [
            {"k": "move", "monitor": 1, "x": 10, "y": 20},
            {"k": "button", "button": 1, "down": True},
            {"k": "button", "button": 1, "down": False},
            {"k": "key", "keysym": "Shift_L", "down": True},
            {"k": "key", "keysym": "A", "down": True},
            {"k": "wheel", "dy": 3},
        ]
    )
    assert decode_input_events(text) == [
        PointerMove(monitor=1, x=10, y=20),
        ButtonInput(button=1, down=True),
        ButtonInput(button=1, down=False),
        KeyInput(keysym="Shift_L", down=True),
        KeyInput(keysym="A", down=True),
        WheelInput(dx=0, dy=3),
    ]


@pytest.mark.parametrize(
    ("events", "where"),
    [
        ([], "length >= 1"),
        ([{"k": "move", "x": 1, "y": 2}] * (MAX_INPUT_EVENTS + 1), f"length <= {MAX_INPUT_EVENTS}"),
        ([{"k": "type", "text": "rm -rf /"}], "Invalid value 'type'"),
        ([{"k": "key", "keysym": "a b", "down": True}], r"$[0].keysym"),
        ([{"k": "key", "keysym": "", "down": True}], r"$[0].keysym"),
        ([{"k": "key", "keysym": "x" * 33, "down": True}], r"$[0].keysym"),
        ([{"k": "key", "keysym": "a"}], "down"),
        ([{"k": "button", "button": 0, "down": True}], r"$[0].button"),
        ([{"k": "button", "button": 6, "down": True}], r"$[0].button"),
        ([{"k": "move", "x": -1, "y": 0}], r"$[0].x"),
        ([{"k": "move", "x": 0, "y": 65536}], r"$[0].y"),
        ([{"k": "move", "monitor": 0, "x": 0, "y": 0}], r"$[0].monitor"),
        ([{"k": "wheel", "dy": 11}], r"$[0].dy"),
        ([{"k": "wheel", "dy": 1, "extra": 1}], "extra"),
        ({"k": "wheel"}, "Expected `array`"),
    ],
)
def test_bad_events_are_refused_naming_the_field(events: Any, where: str) -> None:
    with pytest.raises(ValueError, match="invalid input events") as info:
        decode_input_events(json.dumps(events))
    assert where in str(info.value)


def test_a_live_input_frame_with_a_bad_event_or_nonce_is_invalid() -> None:
    good = LiveInput(session_id="ab", nonce=NONCE, events=[KeyInput(keysym="a", down=True)])
    raw = msgspec.msgpack.decode(encode_message(good))
    for field, value in (
        ("events", [{"k": "key", "keysym": "a;b", "down": True}]),
        ("events", []),
        ("nonce", "xyz"),
        ("session_id", "NOT-HEX"),
    ):
        frame = msgspec.msgpack.encode({**raw, field: value})
        with pytest.raises(InvalidMessage, match=field):
            decode_server_message(frame, 1 << 20)
