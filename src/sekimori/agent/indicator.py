"""What the PC's user sees during live view: a red bar across the top of the screen
while the screen is watched, and, when the policy asks for it, a consent dialog
before anything is captured.

Both are plain X windows drawn with python-xlib: the text is rendered once with Pillow
into a pixmap that becomes the window's background, so the X server repaints it by
itself (no drawing loop). The bar is override-redirect (no window manager frame, not
in the task list, cannot be moved or closed by the user) and is raised again every
second so no window stays over it. The dialog is a managed window kept above the
others; Enter or its "Allow" button allows, Escape, "Deny", closing it or no answer
within the timeout refuses.

Remote control (``sekimori.agent.actions.remote``) has its own forms of both: a
consent dialog asking whether the viewer may *control* the keyboard and mouse
(``CONTROL_CONSENT_TITLE``), and, while control is granted, an orange bar just below
the red one (``ControlIndicator``, ``CONTROL_INDICATOR_TITLE``) saying who controls
the PC; clicking it or pressing the Pause key takes control back at once.

Windows are named (WM_NAME) ``INDICATOR_TITLE``, ``CONSENT_TITLE``,
``CONTROL_INDICATOR_TITLE`` and ``CONTROL_CONSENT_TITLE``: tests and administrators
find them by those names. Blocking calls: run them in a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageDraw, ImageFont
from Xlib import XK, X, Xatom
from Xlib.display import Display
from Xlib.error import CatchError, XError

from sekimori.agent.platform.linux.x11 import _open_display

__all__ = [
    "CONSENT_TITLE",
    "CONTROL_CONSENT_TITLE",
    "CONTROL_INDICATOR_TITLE",
    "INDICATOR_TITLE",
    "TAKE_BACK_KEY",
    "ControlIndicator",
    "Indicator",
    "ask_consent",
]

log = logging.getLogger(__name__)

INDICATOR_TITLE = "Sekimori live view"
CONSENT_TITLE = "Sekimori: allow screen viewing?"
CONTROL_INDICATOR_TITLE = "Sekimori remote control"
CONTROL_CONSENT_TITLE = "Sekimori: allow remote control?"
# The key that takes control back (grabbed on the whole display while controlled).
TAKE_BACK_KEY = "Pause"
BAR_HEIGHT = 30
_RED = (200, 16, 32)
_ORANGE = (224, 112, 0)
_WHITE = (255, 255, 255)
_GREEN = (24, 128, 56)
_GREY = (96, 96, 96)
_XK_RETURN = 0xFF0D
_XK_KP_ENTER = 0xFF8D
_XK_ESCAPE = 0xFF1B
# Fonts with Japanese glyphs, where distributions put them. Without one the texts are
# shown in English only (Pillow's own font has no kana or kanji).
_CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/vlgothic/VL-Gothic-Regular.ttf",
    "/usr/share/fonts/truetype/takao-gothic/TakaoGothic.ttf",
)


def _font(size: int) -> tuple[Any, bool]:
    """A font and whether it has Japanese glyphs."""
    for path in _CJK_FONTS:
        if Path(path).is_file():
            try:
                return ImageFont.truetype(path, size), True
            except OSError:
                continue
    return ImageFont.load_default(size), False


def indicator_text(viewer: str, japanese: bool, recorded: bool = False) -> str:
    english = f"Your screen is being viewed by {viewer}" + (" and recorded" if recorded else "")
    if not japanese:
        return english
    return f"画面を閲覧中{'・録画中' if recorded else ''}: {viewer}  /  {english}"


def _pixmap(display: Display, window: Any, image: Image.Image) -> Any:
    """A server-side pixmap holding ``image`` (24-bit TrueColor, as Xvfb and every
    desktop today)."""
    screen = display.screen()
    width, height = image.size
    pixmap = window.create_pixmap(width, height, screen.root_depth)
    gc = pixmap.create_gc()
    data = image.convert("RGBX").tobytes("raw", "BGRX")
    # Rows in slices: one PutImage request must stay under the maximum request size.
    rows = max(1, (65535 * 4 - 64) // (width * 4))
    for top in range(0, height, rows):
        part = data[top * width * 4 : (top + min(rows, height - top)) * width * 4]
        pixmap.put_image(gc, 0, top, width, min(rows, height - top), X.ZPixmap, 24, 0, part)
    gc.free()
    return pixmap


def _set_names(display: Display, window: Any, title: str) -> None:
    window.set_wm_name(title)
    window.change_property(
        display.intern_atom("_NET_WM_NAME"),
        display.intern_atom("UTF8_STRING"),
        8,
        title.encode(),
    )
    window.set_wm_class("sekimori-agent", "Sekimori")


class Indicator:
    """The red bar at the top of the screen while it is watched. ``close()`` removes it
    (also when the X server went away)."""

    def __init__(
        self, display: str, xauthority: str | None, viewer: str, recorded: bool = False
    ) -> None:
        self._display = _open_display(display, xauthority)
        self._stop = threading.Event()
        try:
            screen = self._display.screen()
            width = screen.width_in_pixels
            font, japanese = _font(16)
            image = Image.new("RGB", (width, BAR_HEIGHT), _RED)
            draw = ImageDraw.Draw(image)
            text = indicator_text(viewer, japanese, recorded)
            box = draw.textbbox((0, 0), text, font=font)
            left = max(8, (width - (box[2] - box[0])) // 2)
            draw.text((left, (BAR_HEIGHT - (box[3] - box[1])) // 2 - box[1]), text, _WHITE, font)
            self._window = screen.root.create_window(
                0,
                0,
                width,
                BAR_HEIGHT,
                0,
                screen.root_depth,
                X.InputOutput,
                X.CopyFromParent,
                override_redirect=True,
                background_pixel=screen.black_pixel,
            )
            _set_names(self._display, self._window, INDICATOR_TITLE)
            self._window.change_attributes(
                background_pixmap=_pixmap(self._display, self._window, image)
            )
            self._window.map()
            self._window.raise_window()
            self._display.sync()
        except BaseException:
            self._display.close()
            raise
        self._keeper = threading.Thread(
            target=self._keep_on_top, name="live-indicator", daemon=True
        )
        self._keeper.start()

    @property
    def window_id(self) -> int:
        return int(self._window.id)

    def _keep_on_top(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._window.raise_window()
                self._display.flush()
            except (XError, OSError) as exc:
                log.warning("live-view indicator: %s", exc)
                return

    def close(self) -> None:
        self._stop.set()
        self._keeper.join(timeout=5)
        try:
            self._window.destroy()
            self._display.sync()
        except (XError, OSError):
            pass  # the display is gone: so is the window
        finally:
            self._display.close()


def control_text(controller: str, japanese: bool) -> list[str]:
    english = (
        f"Your keyboard and mouse are being controlled by {controller}"
        f" — click here or press {TAKE_BACK_KEY} to take control back"
    )
    if not japanese:
        return [english]
    japanese_text = (
        f"遠隔操作中: {controller}（ここをクリックするか {TAKE_BACK_KEY} キーで操作を取り戻せます）"
    )
    return [japanese_text, english]


class ControlIndicator:
    """The orange bar under the red one while someone controls the PC remotely.

    A click on it, or the ``TAKE_BACK_KEY`` pressed anywhere (grabbed on the root
    window; when another program holds that grab, the click still works), calls
    ``on_take_back`` once, from the bar's own thread. ``close()`` removes it."""

    def __init__(
        self,
        display: str,
        xauthority: str | None,
        controller: str,
        on_take_back: Callable[[], None],
    ) -> None:
        self._display = _open_display(display, xauthority)
        self._stop = threading.Event()
        self._on_take_back = on_take_back
        self.hotkey = False
        try:
            screen = self._display.screen()
            width = screen.width_in_pixels
            font, japanese = _font(15)
            lines = control_text(controller, japanese)
            height = 8 + 22 * len(lines)
            image = Image.new("RGB", (width, height), _ORANGE)
            draw = ImageDraw.Draw(image)
            for i, line in enumerate(lines):
                box = draw.textbbox((0, 0), line, font=font)
                left = max(8, (width - (box[2] - box[0])) // 2)
                draw.text((left, 4 + 22 * i - box[1]), line, _WHITE, font)
            self._window = screen.root.create_window(
                0,
                BAR_HEIGHT,
                width,
                height,
                0,
                screen.root_depth,
                X.InputOutput,
                X.CopyFromParent,
                override_redirect=True,
                background_pixel=screen.black_pixel,
                event_mask=X.ButtonPressMask,
            )
            _set_names(self._display, self._window, CONTROL_INDICATOR_TITLE)
            self._window.change_attributes(
                background_pixmap=_pixmap(self._display, self._window, image)
            )
            self._window.map()
            self._window.raise_window()
            self._keycode = self._display.keysym_to_keycode(XK.string_to_keysym(TAKE_BACK_KEY))
            if self._keycode:
                catch = CatchError()
                screen.root.grab_key(
                    self._keycode,
                    X.AnyModifier,
                    True,
                    X.GrabModeAsync,
                    X.GrabModeAsync,
                    onerror=catch,
                )
                self._display.sync()
                self.hotkey = catch.get_error() is None
            self._display.sync()
        except BaseException:
            self._display.close()
            raise
        self._thread = threading.Thread(target=self._watch, name="control-indicator", daemon=True)
        self._thread.start()

    @property
    def window_id(self) -> int:
        return int(self._window.id)

    def _watch(self) -> None:
        last_raise = time.monotonic()
        while not self._stop.wait(0.05):
            try:
                while self._display.pending_events():
                    event = self._display.next_event()
                    taken = (
                        event.type == X.ButtonPress and event.window.id == self._window.id
                    ) or (event.type == X.KeyPress and event.detail == self._keycode)
                    if taken:
                        log.info("remote control: the user took control back")
                        self._on_take_back()
                        return
                if time.monotonic() - last_raise >= 1.0:
                    last_raise = time.monotonic()
                    self._window.raise_window()
                    self._display.flush()
            except Exception as exc:  # noqa: BLE001 - X errors, a closed display
                log.warning("remote-control indicator: %s", exc)
                return

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        try:
            if self.hotkey:
                self._display.screen().root.ungrab_key(self._keycode, X.AnyModifier)
            self._window.destroy()
            self._display.sync()
        except (XError, OSError):
            pass  # the display is gone: so is the window
        finally:
            self._display.close()


def _button(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str, fill: Any
) -> None:
    font, _ = _font(16)
    draw.rectangle(box, fill=fill)
    bbox = draw.textbbox((0, 0), text, font=font)
    x = box[0] + (box[2] - box[0] - (bbox[2] - bbox[0])) // 2
    y = box[1] + (box[3] - box[1] - (bbox[3] - bbox[1])) // 2 - bbox[1]
    draw.text((x, y), text, _WHITE, font)


def ask_consent(
    display: str,
    xauthority: str | None,
    viewer: str,
    timeout: float,
    cancel: threading.Event | None = None,
    *,
    purpose: Literal["view", "control"] = "view",
) -> bool:
    """Ask the PC's user whether ``viewer`` may watch the screen (``purpose="view"``)
    or control its keyboard and mouse (``"control"``); True only for an explicit
    "allow" (Enter or the button) within ``timeout`` seconds. Setting ``cancel``
    closes the dialog at once (the request was withdrawn): False."""
    conn = _open_display(display, xauthority)
    try:
        return _ask(conn, viewer, timeout, cancel or threading.Event(), purpose)
    finally:
        conn.close()


def _consent_lines(viewer: str, japanese: bool, purpose: str) -> list[str]:
    if purpose == "control":
        lines = [
            f"{viewer} asks to control this PC's keyboard and mouse",
            "while viewing the screen. Allow?",
            f"(Click the orange bar or press {TAKE_BACK_KEY} to take control back.)",
        ]
        if japanese:
            ja = f"{viewer} さんがこの PC のキーボードとマウスの遠隔操作を求めています。"
            lines = [ja, "許可しますか？", *lines]
        return lines
    lines = [f"{viewer} asks to view your screen.", "Allow?"]
    if japanese:
        lines = [f"{viewer} さんがこの画面の閲覧を求めています。", "許可しますか？", *lines]
    return lines


def _ask(conn: Display, viewer: str, timeout: float, cancel: threading.Event, purpose: str) -> bool:
    screen = conn.screen()
    font, japanese = _font(16)
    lines = _consent_lines(viewer, japanese, purpose)
    width = 520 if purpose == "view" else 640
    height = 90 + 26 * len(lines)
    middle = width // 2
    allow_box = (middle - 200, height - 60, middle - 20, height - 20)
    deny_box = (middle + 20, height - 60, middle + 200, height - 20)
    image = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((20, 16 + 26 * i), line, (0, 0, 0), font)
    _button(draw, allow_box, "許可 Allow (Enter)" if japanese else "Allow (Enter)", _GREEN)
    _button(draw, deny_box, "拒否 Deny (Esc)" if japanese else "Deny (Esc)", _GREY)
    window = screen.root.create_window(
        (screen.width_in_pixels - width) // 2,
        (screen.height_in_pixels - height) // 3,
        width,
        height,
        1,
        screen.root_depth,
        X.InputOutput,
        X.CopyFromParent,
        background_pixel=screen.white_pixel,
        event_mask=X.KeyPressMask | X.ButtonPressMask | X.StructureNotifyMask,
    )
    _set_names(conn, window, CONSENT_TITLE if purpose == "view" else CONTROL_CONSENT_TITLE)
    window.change_attributes(background_pixmap=_pixmap(conn, window, image))
    window.set_wm_hints(flags=1, input=1)  # InputHint: it takes the keyboard
    delete = conn.intern_atom("WM_DELETE_WINDOW")
    window.set_wm_protocols([delete])
    state = conn.intern_atom("_NET_WM_STATE")
    window.change_property(
        state, Xatom.ATOM, 32, [conn.intern_atom("_NET_WM_STATE_ABOVE")], X.PropModeReplace
    )
    window.map()
    conn.sync()
    deadline = time.monotonic() + timeout
    focused = False
    try:
        while time.monotonic() < deadline and not cancel.is_set():
            while conn.pending_events():
                event = conn.next_event()
                if event.type == X.MapNotify and not focused:
                    window.set_input_focus(X.RevertToParent, X.CurrentTime)
                    focused = True
                elif event.type == X.KeyPress:
                    keysym = conn.keycode_to_keysym(event.detail, 0)
                    if keysym in (_XK_RETURN, _XK_KP_ENTER):
                        return True
                    if keysym == _XK_ESCAPE:
                        return False
                elif event.type == X.ButtonPress:
                    x, y = event.event_x, event.event_y
                    if allow_box[0] <= x <= allow_box[2] and allow_box[1] <= y <= allow_box[3]:
                        return True
                    if deny_box[0] <= x <= deny_box[2] and deny_box[1] <= y <= deny_box[3]:
                        return False
                elif (
                    event.type == X.ClientMessage and event.data[1][0] == delete
                ) or event.type == X.DestroyNotify:
                    return False
            time.sleep(0.05)
        return False
    finally:
        try:
            window.destroy()
            conn.sync()
        except (XError, OSError):
            pass
