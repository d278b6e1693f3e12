"""Remote control on the wire: the keyboard and mouse events a console user sends to a
PC over a live-view session (``live_input``), and the PC's word on the grant
(``live_control``).

Input is only ever *injected* by the agent while a grant is active: a signed
``remote_control`` command (``sekimori.protocol.actions.RemoteControlParams``) that the
agent verified, that the PC's user allowed, for the console user who requested it,
within its ``max_seconds``. Everything else is dropped and counted on the PC.

Events are small tagged maps (``k`` names the kind):

* ``key``: an X keysym *name* (``a``, ``A``, ``Return``, ``Shift_L``, ``F5``,
  ``exclam`` ...) and whether it goes down or up. Names, not keycodes: the agent maps
  them on the PC's own keyboard map; an unknown name is dropped there.
* ``move``: the pointer to ``(x, y)`` in the coordinates of the *picture* of monitor
  ``monitor`` (1 = the first) the viewer sees; the agent scales them back to the
  screen with the size of the last picture it sent of that monitor.
* ``button``: pointer button 1–5 (1 left, 2 middle, 3 right, 4/5 wheel) down or up.
* ``wheel``: ``dy`` steps down (positive) or up, ``dx`` right or left (buttons 4–7
  clicked once per step).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

__all__ = [
    "MAX_INPUT_EVENTS",
    "ButtonInput",
    "InputEvent",
    "KeyInput",
    "PointerMove",
    "WheelInput",
    "decode_input_events",
]

# Events in one ``live_input`` message (the console batches what arrives within a
# few tens of milliseconds).
MAX_INPUT_EVENTS: Final = 64

Keysym = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_]+$")]
PictureCoord = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Steps = Annotated[int, msgspec.Meta(ge=-10, le=10)]


class _Input(msgspec.Struct, tag_field="k", forbid_unknown_fields=True, kw_only=True):
    """Base of the input events; the tag is the kind."""


class KeyInput(_Input, tag="key", kw_only=True):
    keysym: Keysym
    down: bool


class PointerMove(_Input, tag="move", kw_only=True):
    monitor: Annotated[int, msgspec.Meta(ge=1, le=32)] = 1
    x: PictureCoord
    y: PictureCoord


class ButtonInput(_Input, tag="button", kw_only=True):
    button: Annotated[int, msgspec.Meta(ge=1, le=5)]
    down: bool


class WheelInput(_Input, tag="wheel", kw_only=True):
    dx: Steps = 0
    dy: Steps = 0


InputEvent = KeyInput | PointerMove | ButtonInput | WheelInput
InputEvents = Annotated[list[InputEvent], msgspec.Meta(min_length=1, max_length=MAX_INPUT_EVENTS)]

_json_decoder = msgspec.json.Decoder(InputEvents)


def decode_input_events(data: bytes | str) -> list[InputEvent]:
    """Strictly decode a JSON list of input events (what the console's page sends);
    raises ``ValueError`` naming the field."""
    try:
        return _json_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid input events: {exc}") from None
