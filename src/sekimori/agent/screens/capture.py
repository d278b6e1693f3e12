"""Grabbing the pixels of each monitor of an X display (mss).

mss connects through libxcb, which takes the cookie file from ``$XAUTHORITY`` when it
connects: to use another file, the variable is set for the moment of the connection
(under a lock, since the environment is the process's) and restored at once.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import mss
import mss.exception

__all__ = ["CaptureError", "Monitor", "RawFrame", "ScreenGrabber"]

_ENV_LOCK = threading.Lock()


class CaptureError(Exception):
    """The display cannot be opened or read (gone, refused, no such display)."""


@dataclass(frozen=True, slots=True)
class Monitor:
    """One monitor: ``index`` from 0 in the display's order; position on the root."""

    index: int
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class RawFrame:
    """The pixels of one monitor as captured: ``bgra`` is width*height*4 bytes, each
    pixel blue, green, red, then an unused byte (X's 32-bit layout). The buffer is the
    capture library's own (a full-HD copy costs more than the capture): read it, do not
    change it."""

    monitor: int
    width: int
    height: int
    bgra: bytes | bytearray

    def __post_init__(self) -> None:
        if len(self.bgra) != self.width * self.height * 4:
            raise ValueError(
                f"{len(self.bgra)} bytes is not a {self.width}x{self.height} BGRA picture"
            )


class ScreenGrabber:
    """A connection to one X display that captures its monitors. Not thread-safe: use
    one per thread. ``display``/``xauthority`` None: ``$DISPLAY``/``$XAUTHORITY``."""

    def __init__(self, display: str | None = None, xauthority: str | None = None) -> None:
        try:
            with _ENV_LOCK:
                saved = os.environ.get("XAUTHORITY")
                if xauthority:
                    os.environ["XAUTHORITY"] = xauthority
                try:
                    self._mss = mss.MSS(display=display or None)
                    listed = self._mss.monitors
                finally:
                    if xauthority:
                        if saved is None:
                            os.environ.pop("XAUTHORITY", None)
                        else:
                            os.environ["XAUTHORITY"] = saved
        except mss.exception.ScreenShotError as exc:
            raise CaptureError(f"cannot open display {display or '$DISPLAY'}: {exc}") from None
        # mss lists the whole root first, then each monitor. Mirrored monitors show
        # the same rectangle: captured once.
        rects = dict.fromkeys(
            (int(m["left"]), int(m["top"]), int(m["width"]), int(m["height"]))
            for m in (listed[1:] or listed[:1])
        )
        self._monitors = [
            Monitor(index=i, x=x, y=y, width=w, height=h) for i, (x, y, w, h) in enumerate(rects)
        ]

    def monitors(self) -> list[Monitor]:
        """Every monitor of the display (as found when the grabber was opened)."""
        return list(self._monitors)

    def grab(self, monitor: Monitor) -> RawFrame:
        try:
            shot = self._mss.grab(
                {
                    "left": monitor.x,
                    "top": monitor.y,
                    "width": monitor.width,
                    "height": monitor.height,
                }
            )
        except mss.exception.ScreenShotError as exc:
            raise CaptureError(f"cannot capture monitor {monitor.index}: {exc}") from None
        return RawFrame(monitor=monitor.index, width=shot.width, height=shot.height, bgra=shot.raw)

    def close(self) -> None:
        self._mss.close()

    def __enter__(self) -> ScreenGrabber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
