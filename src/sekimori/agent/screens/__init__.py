"""Screen capture on the agent: grab every monitor, tell changed frames from unchanged
ones, downscale and encode (issue 6). Used by the screens collector and by live view.

* ``ScreenGrabber(display, xauthority)``: ``monitors()`` and ``grab(monitor)`` (mss, X11
  through XCB, shared memory when the server offers it).
* ``ChangeDetector(threshold)``: ``changed(monitor_index, raw)`` — a cheap perceptual
  difference against the last frame reported as changed for that monitor.
* ``encode(raw, scale=, format=, quality=)``: Pillow, JPEG or WebP.

Everything here is synchronous and does no I/O besides the X connection: callers run
it in their own thread.
"""

from __future__ import annotations

from sekimori.agent.screens.capture import (
    CaptureError,
    Monitor,
    RawFrame,
    ScreenGrabber,
)
from sekimori.agent.screens.diff import ChangeDetector, signature
from sekimori.agent.screens.encode import EncodedFrame, ImageFormat, encode

__all__ = [
    "CaptureError",
    "ChangeDetector",
    "EncodedFrame",
    "ImageFormat",
    "Monitor",
    "RawFrame",
    "ScreenGrabber",
    "encode",
    "signature",
]
