"""Events of the screens collector: what was on a PC's screen (issue 6).

* ``screen.frame`` — one screenshot of one monitor, downscaled and encoded on the PC,
  taken on a trigger chosen by the device group's policy (the focused window changed,
  an interval passed, a rule fired on the server and asked for a burst). Frames that
  did not change enough since the last one of the same monitor are not sent.

The picture travels in ``image`` through the outbox like every event (nothing lost
while the PC is offline). The server verifies ``sha256``, moves the picture into its
encrypted blob store and keeps the event without it (``image`` empty): the events
table never holds pictures.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from sekimori.protocol.events._base import Payload

__all__ = ["KINDS", "MAX_FRAME_BYTES", "ScreenFrame"]

# One encoded frame: a full-HD screenshot as JPEG or WebP is 50-400 KB; PNG of a busy
# screen can reach a few MB. Beyond this the agent lowers the quality or the scale.
MAX_FRAME_BYTES: Final = 3 * 1024 * 1024

# "action": a one-off screenshot asked for by a remote action (docs/actions.md).
Trigger = Literal["window_change", "interval", "rule", "live", "action"]
ImageFormat = Literal["jpeg", "webp", "png"]


class ScreenFrame(Payload):
    """One monitor's picture. ``width``/``height``: the encoded image; ``screen_width``
    /``screen_height``: the monitor's own size. ``title``/``application``/``user``:
    the focused window when the frame was taken (None when unknown or withheld by
    policy). ``sha256``: hex digest of ``image`` as sent."""

    monitor: Annotated[int, msgspec.Meta(ge=0, le=64)]
    width: Annotated[int, msgspec.Meta(ge=1, le=16384)]
    height: Annotated[int, msgspec.Meta(ge=1, le=16384)]
    screen_width: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    screen_height: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    format: ImageFormat
    image: Annotated[bytes, msgspec.Meta(max_length=MAX_FRAME_BYTES)]
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    trigger: Trigger
    title: str | None = None
    application: str | None = None
    user: str | None = None


KINDS: Final[dict[str, type[Payload]]] = {"screen.frame": ScreenFrame}
