"""Keyboard and mouse input injected into the PC's X session (remote control).

The X server's XTEST extension (``Xlib.ext.xtest.fake_input``) makes key presses,
pointer motion and button presses that applications cannot tell from the real
keyboard and mouse. Keys arrive as keysym *names* and are mapped to keycodes on the
session's own keyboard map (a name the map does not have is skipped); the pointer
arrives in screen coordinates (``sekimori.agent.live`` scales the viewer's picture
coordinates back). Every key and button this injector pressed and did not release
is released by ``release_all`` — when control ends, nothing stays held down.

Blocking calls on an X connection of the injector's own: use one thread.
"""

from __future__ import annotations

import contextlib
import logging

from Xlib import XK, X
from Xlib.error import XError
from Xlib.ext import xtest

from sekimori.agent.platform.linux.x11 import _open_display
from sekimori.protocol.live_input import ButtonInput, InputEvent, KeyInput, WheelInput

__all__ = ["Injector", "NoXTest", "ScreenPoint"]

log = logging.getLogger(__name__)

ScreenPoint = tuple[int, int]
# Wheel steps are clicks of these buttons (X's convention).
_WHEEL = {"up": 4, "down": 5, "left": 6, "right": 7}


class NoXTest(Exception):
    """The X server has no XTEST extension: input cannot be injected."""


class Injector:
    """Inject input on ``display``. ``apply`` returns how many events were injected
    (the rest were skipped: unknown keysym, a release of something not pressed)."""

    def __init__(self, display: str, xauthority: str | None) -> None:
        self._display = _open_display(display, xauthority)
        try:
            info = self._display.query_extension(xtest.extname)
            if info is None or not info.present:
                raise NoXTest("the X server has no XTEST extension")
            self._display.display.set_extension_major(xtest.extname, info.major_opcode)
        except BaseException:
            self._display.close()
            raise
        self._keys: set[int] = set()
        self._buttons: set[int] = set()
        self.skipped = 0

    def keycode(self, keysym_name: str) -> tuple[int, int]:
        """The keycode of a keysym name on this display's keyboard map and its shift
        level (0 plain, 1 with Shift ...); (0, 0) when the map does not have it."""
        keysym = XK.string_to_keysym(keysym_name)
        if keysym == X.NoSymbol:
            return 0, 0
        for code, level in self._display.keysym_to_keycodes(keysym):
            return int(code), int(level)
        return 0, 0

    def _shift_held(self) -> bool:
        shifts = {self.keycode("Shift_L")[0], self.keycode("Shift_R")[0]} - {0}
        return bool(shifts & self._keys)

    def apply(self, events: list[tuple[InputEvent, ScreenPoint | None]]) -> int:
        """Inject ``events`` in order (a pointer move comes with its screen point,
        already scaled; None skips it)."""
        done = 0
        for event, point in events:
            if self._one(event, point):
                done += 1
            else:
                self.skipped += 1
        self._display.sync()
        return done

    def _one(self, event: InputEvent, point: ScreenPoint | None) -> bool:
        display = self._display
        if isinstance(event, KeyInput):
            code, level = self.keycode(event.keysym)
            if not code or (not event.down and code not in self._keys):
                return False
            if not event.down:
                xtest.fake_input(display, X.KeyRelease, code)
                self._keys.discard(code)
                return True
            # "A" or "!" without the viewer's Shift (a browser may send the character
            # alone): hold Shift around the press, as the person would.
            shift = self.keycode("Shift_L")[0] if level == 1 and not self._shift_held() else 0
            if shift:
                xtest.fake_input(display, X.KeyPress, shift)
            xtest.fake_input(display, X.KeyPress, code)
            if shift:
                xtest.fake_input(display, X.KeyRelease, shift)
            self._keys.add(code)
            return True
        if isinstance(event, ButtonInput):
            if not event.down and event.button not in self._buttons:
                return False
            kind = X.ButtonPress if event.down else X.ButtonRelease
            xtest.fake_input(display, kind, event.button)
            (self._buttons.add if event.down else self._buttons.discard)(event.button)
            return True
        if isinstance(event, WheelInput):
            clicks = [_WHEEL["down" if event.dy > 0 else "up"]] * abs(event.dy)
            clicks += [_WHEEL["right" if event.dx > 0 else "left"]] * abs(event.dx)
            for button in clicks:
                xtest.fake_input(display, X.ButtonPress, button)
                xtest.fake_input(display, X.ButtonRelease, button)
            return bool(clicks)
        if point is None:
            return False
        xtest.fake_input(display, X.MotionNotify, x=point[0], y=point[1])
        return True

    def release_all(self) -> None:
        """Release every key and button still pressed by this injector."""
        try:
            for code in sorted(self._keys):
                xtest.fake_input(self._display, X.KeyRelease, code)
            for button in sorted(self._buttons):
                xtest.fake_input(self._display, X.ButtonRelease, button)
            self._display.sync()
        except (XError, OSError) as exc:  # the session is gone: nothing is held any more
            log.info("remote control: release on a closed display: %s", exc)
        self._keys.clear()
        self._buttons.clear()

    @property
    def held(self) -> tuple[frozenset[int], frozenset[int]]:
        """Keycodes and buttons pressed and not yet released."""
        return frozenset(self._keys), frozenset(self._buttons)

    def close(self) -> None:
        self.release_all()
        with contextlib.suppress(XError, OSError):
            self._display.close()
