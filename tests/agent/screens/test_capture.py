"""The capture module against a real X server (Xvfb + openbox + xterm): monitors,
pixels, the change detector and the encoders, checked on the real picture."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from PIL import Image

from sekimori.agent.screens import (
    CaptureError,
    ChangeDetector,
    Monitor,
    RawFrame,
    ScreenGrabber,
    encode,
)
from tests.agent.screens.monitors import split_monitors
from tests.desktop import Desktop, desktop_fixture  # noqa: F401

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def geometry(desktop: Desktop, window: int) -> tuple[int, int, int, int]:
    """x, y, width, height of a window on the root."""
    out = desktop.xdotool("getwindowgeometry", str(window))
    x, y = map(int, re.search(r"Position: (\d+),(\d+)", out).groups())  # type: ignore[union-attr]
    w, h = map(int, re.search(r"Geometry: (\d+)x(\d+)", out).groups())  # type: ignore[union-attr]
    return x, y, w, h


def pixel(raw: RawFrame, x: int, y: int) -> tuple[int, int, int]:
    i = (y * raw.width + x) * 4
    b, g, r = raw.bgra[i : i + 3]
    return r, g, b


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(p - q) <= tolerance for p, q in zip(a, b, strict=True))


def settle(grabber: ScreenGrabber, monitor: Monitor) -> RawFrame:
    """A frame once the screen has stopped changing (windows mapped and painted)."""
    last = grabber.grab(monitor)
    for _ in range(50):
        time.sleep(0.1)
        frame = grabber.grab(monitor)
        if frame.bgra == last.bgra:
            return frame
        last = frame
    return last


def test_the_grabbed_picture_shows_the_window(desktop: Desktop) -> None:
    term = desktop.xterm("red", args=("-bg", "red", "-geometry", "60x20+100+80"))
    desktop.focus(term.window)
    with ScreenGrabber(desktop.display, str(desktop.xauthority)) as grabber:
        assert grabber.monitors() == [Monitor(index=0, x=0, y=0, width=1280, height=800)]
        monitor = grabber.monitors()[0]
        raw = settle(grabber, monitor)
        assert (raw.width, raw.height, len(raw.bgra)) == (1280, 800, 1280 * 800 * 4)
        x, y, w, h = geometry(desktop, term.window)
        # The middle of the terminal is its red background; outside it, the black root.
        assert pixel(raw, x + w // 2, y + h // 2) == RED
        assert pixel(raw, 1270, 790) != RED

        for fmt in ("jpeg", "webp"):
            frame = encode(raw, scale=0.5, format=fmt, quality=70)
            assert (frame.width, frame.height, frame.format) == (640, 400, fmt)
            image = Image.open(io.BytesIO(frame.data))
            assert image.format == fmt.upper()
            assert image.size == (640, 400)
            rgb = image.convert("RGB")
            got = rgb.getpixel(((x + w // 2) // 2, (y + h // 2) // 2))
            assert isinstance(got, tuple)
            assert near(got, RED), (fmt, got)


def test_an_unchanged_screen_is_not_a_change_and_a_new_window_is(desktop: Desktop) -> None:
    term = desktop.xterm("first", args=("-geometry", "40x10+10+10"))
    desktop.focus(term.window)
    detector = ChangeDetector(threshold=0.5)
    with ScreenGrabber(desktop.display, str(desktop.xauthority)) as grabber:
        monitor = grabber.monitors()[0]
        first = settle(grabber, monitor)
        assert detector.changed(0, first)  # the first frame always counts
        assert not detector.changed(0, grabber.grab(monitor))
        assert not detector.changed(0, grabber.grab(monitor))
        other = desktop.xterm("second", args=("-bg", "blue", "-geometry", "100x40+300+200"))
        desktop.focus(other.window)
        after = settle(grabber, monitor)
        assert detector.changed(0, after)
        assert not detector.changed(0, after)
        # Another monitor index has its own history.
        assert detector.changed(1, after)
        detector.forget(0)
        assert detector.changed(0, after)


def test_change_detector_on_known_pictures() -> None:
    def solid(gray: int, width: int = 320, height: int = 180) -> RawFrame:
        return RawFrame(0, width, height, bytes([gray, gray, gray, 0]) * (width * height))

    detector = ChangeDetector(threshold=2.0)
    assert detector.changed(0, solid(100))
    assert detector.difference(0, solid(101)) == pytest.approx(1.0)
    assert not detector.changed(0, solid(101))  # 1 level: below the threshold
    assert not detector.changed(0, solid(102))  # 2 levels: not above it
    assert detector.changed(0, solid(103))  # compared with 100, the last changed frame
    assert detector.changed(0, solid(103, 160, 90))  # another size: a new screen
    with pytest.raises(ValueError, match="threshold"):
        ChangeDetector(-1)
    with pytest.raises(ValueError, match="BGRA"):
        RawFrame(0, 2, 2, b"\0" * 15)


def test_encode_scales_and_refuses_bad_arguments() -> None:
    raw = RawFrame(0, 1920, 1080, bytes([0, 0, 255, 0]) * (1920 * 1080))
    for scale, size in ((1.0, (1920, 1080)), (0.5, (960, 540)), (0.4, (768, 432))):
        frame = encode(raw, scale=scale, format="jpeg", quality=60)
        image = Image.open(io.BytesIO(frame.data))
        assert image.size == size == (frame.width, frame.height)
        got = image.convert("RGB").getpixel((size[0] // 2, size[1] // 2))
        assert isinstance(got, tuple)
        assert near(got, RED, 8)
    with pytest.raises(ValueError, match="scale"):
        encode(raw, scale=0, format="jpeg", quality=60)
    with pytest.raises(ValueError, match="scale"):
        encode(raw, scale=1.5, format="jpeg", quality=60)
    with pytest.raises(ValueError, match="quality"):
        encode(raw, scale=1, format="webp", quality=0)
    with pytest.raises(ValueError, match="format"):
        encode(raw, scale=1, format="png", quality=60)  # type: ignore[arg-type]


def test_every_monitor_is_listed_and_grabbed(desktop: Desktop) -> None:
    split_monitors(desktop.display, str(desktop.xauthority), [(0, 0, 640, 800), (640, 0, 640, 800)])
    term = desktop.xterm("right", args=("-bg", "blue", "-geometry", "40x10+700+100"))
    desktop.focus(term.window)
    with ScreenGrabber(desktop.display, str(desktop.xauthority)) as grabber:
        monitors = grabber.monitors()
        assert monitors == [
            Monitor(index=0, x=0, y=0, width=640, height=800),
            Monitor(index=1, x=640, y=0, width=640, height=800),
        ]
        right = settle(grabber, monitors[1])
        left = grabber.grab(monitors[0])
        assert (right.monitor, right.width, right.height) == (1, 640, 800)
        x, y, w, h = geometry(desktop, term.window)
        assert pixel(right, x - 640 + w // 2, y + h // 2) == BLUE
        assert BLUE not in {pixel(left, px, py) for px in range(0, 640, 16) for py in (100, 400)}


def test_a_display_that_cannot_be_opened_is_a_capture_error(
    desktop: Desktop, tmp_path: Path
) -> None:
    with pytest.raises(CaptureError, match="cannot open display"):
        ScreenGrabber(":9999", str(desktop.xauthority))
    # The server refuses a client without its cookie.
    empty = tmp_path / "empty-xauthority"
    empty.write_bytes(b"")
    with pytest.raises(CaptureError, match="cannot open display"):
        ScreenGrabber(desktop.display, str(empty))
