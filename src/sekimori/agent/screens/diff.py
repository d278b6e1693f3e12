"""A cheap perceptual difference between two frames of the same monitor.

Each frame is reduced to a small grayscale thumbnail (``SIGNATURE_SIZE``, box-filtered
over every fourth row); two frames differ when the mean absolute
difference of their thumbnails, in gray levels 0-255, exceeds the threshold. A cursor
blink, a clock ticking or a word typed moves it by hundredths of a level; another
window, a scrolled page or a new mail by several levels. The comparison is against the
last frame that was reported changed, so slow changes add up until they count.
"""

from __future__ import annotations

from typing import Final

from PIL import Image, ImageChops, ImageStat

from sekimori.agent.screens.capture import RawFrame

__all__ = ["SIGNATURE_SIZE", "ChangeDetector", "signature"]

SIGNATURE_SIZE: Final = (64, 36)
_ROW_STEP: Final = 4


def signature(raw: RawFrame) -> Image.Image:
    """The frame as a ``SIGNATURE_SIZE`` grayscale thumbnail.

    The pixels are read in place as RGBX (no conversion of the full-size picture), so
    blue and red trade places in the gray weights: harmless for comparing frames of the
    same screen with each other. Only every ``_ROW_STEP``-th row is read (a line of
    text is over a dozen rows tall, so no change of a line is missed): a quarter of the
    work."""
    step = max(1, min(_ROW_STEP, raw.height // SIGNATURE_SIZE[1]))
    rows = raw.height // step
    image = Image.frombuffer(
        "RGBX", (raw.width, rows), raw.bgra, "raw", "RGBX", raw.width * 4 * step, 1
    )
    return image.resize(SIGNATURE_SIZE, Image.Resampling.BOX).convert("L")


class ChangeDetector:
    """Remembers, per monitor, the last frame reported as changed.

    ``threshold``: mean absolute difference in gray levels (0-255) above which a frame
    counts as changed. The first frame of a monitor, and a frame of another size, are
    always changed."""

    def __init__(self, threshold: float) -> None:
        if threshold < 0:
            raise ValueError("threshold must be >= 0")
        self.threshold = threshold
        self._last: dict[int, tuple[tuple[int, int], Image.Image]] = {}

    def difference(self, monitor_index: int, raw: RawFrame) -> float | None:
        """The difference from the last changed frame of that monitor (None: none)."""
        last = self._last.get(monitor_index)
        if last is None or last[0] != (raw.width, raw.height):
            return None
        return _mean_difference(last[1], signature(raw))

    def changed(self, monitor_index: int, raw: RawFrame) -> bool:
        """Whether ``raw`` differs enough from the last changed frame; if so it becomes
        the one later frames are compared with."""
        current = signature(raw)
        last = self._last.get(monitor_index)
        if (
            last is not None
            and last[0] == (raw.width, raw.height)
            and _mean_difference(last[1], current) <= self.threshold
        ):
            return False
        self._last[monitor_index] = ((raw.width, raw.height), current)
        return True

    def forget(self, monitor_index: int | None = None) -> None:
        """Make the next frame of that monitor (of every monitor: None) count as changed."""
        if monitor_index is None:
            self._last.clear()
        else:
            self._last.pop(monitor_index, None)


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(ImageStat.Stat(ImageChops.difference(a, b)).mean[0])
