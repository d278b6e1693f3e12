"""The X11 side of window watching: active window, its title and client, input idle.

Everything is event-driven where X allows it: the window manager announces focus by
changing ``_NET_ACTIVE_WINDOW`` on the root window (EWMH), and applications change
their title by changing ``_NET_WM_NAME``/``WM_NAME`` on their window; both arrive as
``PropertyNotify`` events, so ``X11Connection.wait`` blocks on the socket instead of
polling. Input idle time comes from the MIT-SCREEN-SAVER extension, which has no
"input resumed" event that does not also require changing the user's screensaver
timeout, so the caller polls it (see ``idle_ms``).

python-xlib is pure Python and costs no native library; a connection is one socket.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from Xlib import X, Xatom, error, ext
from Xlib.display import Display
from Xlib.support import connect as xconnect

__all__ = [
    "ClientProcess",
    "WindowProps",
    "X11Connection",
    "X11Error",
    "client_process",
    "decode_compound_text",
]

# Titles longer than this are cut: 1 KiB of title says all a console needs, and one
# GetProperty round trip fetches it (the length is in 4-byte units).
_TITLE_LONGS = 256
# python-xlib reads the cookie file once per connect through a module-level hook;
# patching that hook must not race another connect in this process.
_CONNECT_LOCK = threading.Lock()
_FAMILY_LOCAL = 256  # Xauth address families: a host name, or any host
_FAMILY_WILD = 65535
# Real cookie files hold a few entries of ~50 bytes; anything past this is ignored.
_MAX_XAUTHORITY = 64 * 1024
# The one extension used (input idle time). python-xlib's Display otherwise imports a
# module and asks the server about every extension both know (RANDR, XInput, SHAPE
# ...): 1.3 MiB of memory and a round trip each, for nothing here.
_EXTENSIONS = [("MIT-SCREEN-SAVER", "screensaver")]


class X11Error(Exception):
    """The X server refused the connection or went away."""


@dataclass(frozen=True, slots=True)
class WindowProps:
    """What a window says about itself. Empty strings when a property is absent."""

    window: int
    title: str
    instance: str
    """WM_CLASS instance name, e.g. ``xterm``."""
    wm_class: str
    """WM_CLASS class name, e.g. ``XTerm``."""
    pid: int | None
    """``_NET_WM_PID``; None when unset or the client runs on another machine."""


@dataclass(frozen=True, slots=True)
class ClientProcess:
    exe: str
    """``/proc/<pid>/exe``; empty when it cannot be read."""
    uid: int | None


def client_process(pid: int, proc: Path = Path("/proc")) -> ClientProcess:
    """The executable and real uid of a window's process (what is readable of them)."""
    try:
        exe = os.readlink(proc / str(pid) / "exe")
    except OSError:  # exited, kernel thread, or not permitted for a non-root agent
        exe = ""
    uid: int | None = None
    try:
        with (proc / str(pid) / "status").open("rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    uid = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        uid = None
    return ClientProcess(exe=exe, uid=uid)


def _read_cookie_file(path: str) -> bytes:
    """The bytes of a cookie file; empty unless it is a regular file of sane size.

    The path may come from another user's process environment (discovery), so it is
    not trusted: a FIFO must not block the agent, nor /dev/zero exhaust its memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return f.read(_MAX_XAUTHORITY)


def _xauthority_entries(path: str) -> list[tuple[int, bytes, bytes, bytes, bytes]]:
    """(family, address, display number, auth name, auth data) of each entry.

    Parsed here rather than by python-xlib, which prints warnings to stdout and
    ignores FamilyWild entries (which display managers such as gdm write).
    """
    raw = _read_cookie_file(path)
    entries: list[tuple[int, bytes, bytes, bytes, bytes]] = []
    pos = 0
    try:
        while pos < len(raw):
            (family,) = struct.unpack_from(">H", raw, pos)
            pos += 2
            fields: list[bytes] = []
            for _ in range(4):  # address, number, name, data: each a counted string
                (length,) = struct.unpack_from(">H", raw, pos)
                fields.append(raw[pos + 2 : pos + 2 + length])
                pos += 2 + length
            if pos > len(raw):
                break
            entries.append((family, fields[0], fields[1], fields[2], fields[3]))
    except struct.error:
        pass  # a truncated last entry: keep the complete ones
    return entries


def _cookie(path: str, display_number: int) -> tuple[bytes, bytes]:
    """The MIT-MAGIC-COOKIE-1 for a local display in ``path``, or empty (no auth)."""
    host = socket.gethostname().encode()
    wanted = str(display_number).encode()
    for family, address, number, name, data in _xauthority_entries(path):
        if name != b"MIT-MAGIC-COOKIE-1" or number not in (wanted, b""):
            continue
        if family == _FAMILY_WILD or (family == _FAMILY_LOCAL and address == host):
            return name, data
    return b"", b""


def _open_display(display: str, xauthority: str | None) -> Display:
    """Connect with the cookie in ``xauthority`` (else ``$XAUTHORITY``/``~/.Xauthority``).

    python-xlib finds the cookie through a module-level hook, loads the extensions
    listed in a module-level table, and leaks its socket when the server refuses the
    connection; all are handled here, under a lock so that no other connect in this
    process sees the hooks or the table swapped.
    """
    path = xauthority or os.environ.get("XAUTHORITY") or os.path.expanduser("~/.Xauthority")
    opened: list[socket.socket] = []
    original_auth, original_socket = xconnect.get_auth, xconnect.get_socket
    table = vars(ext)  # python-xlib's stubs do not declare its __extensions__
    original_extensions = table["__extensions__"]

    def get_socket(
        dname: Any, protocol: Literal["tcp", "unix"] | None, host: Any, dno: int
    ) -> socket.socket:
        sock = original_socket(dname, protocol, host, dno)
        opened.append(sock)
        return sock

    def get_auth(
        sock: socket.socket,
        dname: object,
        protocol: Literal["tcp", "unix"] | None,
        host: object,
        dno: int,
    ) -> tuple[bytes, bytes]:
        return _cookie(path, dno)

    with _CONNECT_LOCK:
        xconnect.get_auth, xconnect.get_socket = get_auth, get_socket
        table["__extensions__"] = _EXTENSIONS
        try:
            return Display(display)
        except BaseException:
            for sock in opened:
                sock.close()
            raise
        finally:
            xconnect.get_auth, xconnect.get_socket = original_auth, original_socket
            table["__extensions__"] = original_extensions


# COMPOUND_TEXT (X11 "Compound Text Encoding"): ISO 2022 with ASCII in GL and the
# Latin-1 right half in GR until an escape sequence designates another set. Older
# toolkits title their windows this way, xterm too for a moment before it sets
# _NET_WM_NAME, and Japanese, Chinese and Korean titles depend on it.
_CT_94x94 = {ord("A"): "gb2312", ord("B"): "euc_jp", ord("C"): "euc_kr"}  # EUC = set | 0x80
_CT_96 = {  # ISO-IR registry final bytes of the 96-character sets
    ord("A"): "latin-1",
    ord("B"): "iso8859-2",
    ord("C"): "iso8859-3",
    ord("D"): "iso8859-4",
    ord("F"): "iso8859-7",
    ord("G"): "iso8859-6",
    ord("H"): "iso8859-8",
    ord("L"): "iso8859-5",
    ord("M"): "iso8859-9",
    ord("T"): "tis-620",
    ord("V"): "iso8859-10",
    ord("Y"): "iso8859-13",
    ord("_"): "iso8859-14",
    ord("b"): "iso8859-15",
    ord("f"): "iso8859-16",
}


def _ct_segment(data: bytes, gl: str | None, gr: str) -> str:
    out: list[str] = []
    for is_gr, run in _ct_runs(data):
        if is_gr:
            out.append(run.decode(gr, errors="replace"))
        elif gl is None:
            out.append(run.decode("ascii", errors="replace"))
        else:  # a two-byte set in GL: its EUC form is the same bytes with bit 8 set
            out.append(bytes(b | 0x80 for b in run).decode(gl, errors="replace"))
    return "".join(out)


def _ct_runs(data: bytes) -> Iterator[tuple[bool, bytes]]:
    """Split into maximal runs of GL (< 0x80) and GR (>= 0x80) bytes."""
    start = 0
    for i in range(1, len(data) + 1):
        if i == len(data) or (data[i] >= 0x80) != (data[start] >= 0x80):
            yield data[start] >= 0x80, data[start:i]
            start = i


def _decode_named(text: bytes, charset: str) -> str:
    """Decode with an X charset name: ``iso8859-15`` is a Python codec, ``big5-0``
    is ``big5`` with an X encoding suffix."""
    for codec in (charset, charset.rsplit("-", 1)[0]):
        try:
            return text.decode(codec, errors="replace")
        except LookupError:
            continue
    return "\ufffd"


def decode_compound_text(data: bytes) -> str:
    """Decode COMPOUND_TEXT; unknown sets become U+FFFD rather than failing."""
    out: list[str] = []
    gl: str | None = None  # None: ASCII
    gr = "latin-1"
    pos = 0
    while pos < len(data):
        esc = data.find(b"\x1b", pos)
        end = len(data) if esc < 0 else esc
        out.append(_ct_segment(data[pos:end], gl, gr))
        if esc < 0:
            break
        seq = data[esc + 1 : esc + 4]
        pos = esc + 3
        if seq[:1] == b"(":  # a 94-character set to GL: ASCII (or JIS-Roman)
            gl = None
        elif seq[:1] == b"-" and len(seq) > 1:  # a 96-character set to GR
            gr = _CT_96.get(seq[1], "latin-1")
        elif seq[:2] in (b"$(", b"$)") and len(seq) > 2:  # a two-byte set
            codec = _CT_94x94.get(seq[2], "ascii")
            if seq[1:2] == b"(":
                gl = codec
            else:
                gr = codec
            pos = esc + 4
        elif seq[:2] == b"%G":  # a UTF-8 segment, up to ESC % @
            stop = data.find(b"\x1b%@", esc + 3)
            stop = len(data) if stop < 0 else stop
            out.append(data[esc + 3 : stop].decode("utf-8", errors="replace"))
            pos = stop + 3
        elif seq[:2] == b"%/" and len(data) >= esc + 6:  # an extended segment
            length = (data[esc + 4] & 0x7F) * 128 + (data[esc + 5] & 0x7F)
            body = data[esc + 6 : esc + 6 + length]
            name, _, text = body.partition(b"\x02")
            out.append(_decode_named(text, name.decode("ascii", errors="replace")))
            pos = esc + 6 + length
    return "".join(out)


class X11Connection:
    """One connection to an X display, watching the root and the active window.

    Not thread-safe: use it from one thread. Raises ``X11Error`` when the server
    refuses the connection or goes away.
    """

    def __init__(self, display: str, xauthority: str | None = None) -> None:
        try:
            self._d = _open_display(display, xauthority)
        # python-xlib reports a refused or failed connection with assorted classes.
        except (error.DisplayError, error.ConnectionClosedError, OSError) as exc:
            raise X11Error(f"cannot open X display {display!r}: {exc}") from None
        try:
            self._setup(display)
        except (error.XError, error.ConnectionClosedError, OSError) as exc:
            self.close()
            raise X11Error(f"X display {display!r} failed during set-up: {exc}") from None

    def _setup(self, display: str) -> None:
        # Errors of requests sent without a reply (e.g. selecting events on a window
        # that was just destroyed) are expected races, not failures.
        self._d.set_error_handler(lambda *args: None)
        self.name = display
        self._root = self._d.screen().root
        atom = self._d.intern_atom
        self._active_atom = atom("_NET_ACTIVE_WINDOW")
        self._name_atoms = (atom("_NET_WM_NAME"), Xatom.WM_NAME)
        self._pid_atom = atom("_NET_WM_PID")
        self._compound_atom = atom("COMPOUND_TEXT")
        self._hostname = socket.gethostname()
        self._watched = 0
        self.has_idle = bool(self._d.has_extension("MIT-SCREEN-SAVER"))
        self._root.change_attributes(event_mask=X.PropertyChangeMask)
        self._d.flush()

    def close(self) -> None:
        # The server may already be gone: then there is nothing left to release.
        with contextlib.suppress(error.ConnectionClosedError, OSError):
            self._d.close()

    def __enter__(self) -> X11Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------
    def _property(self, window: int, atom: int, longs: int) -> tuple[int, Any] | None:
        try:
            prop = self._d.create_resource_object("window", window).get_property(
                atom, X.AnyPropertyType, 0, longs
            )
        except error.XError:  # the window vanished between event and request
            return None
        except (error.ConnectionClosedError, OSError) as exc:
            raise X11Error(f"lost X display {self.name!r}: {exc}") from None
        return None if prop is None else (prop.property_type, prop.value)

    def active_window(self) -> int | None:
        """The window the window manager calls active; None when none is."""
        prop = self._property(self._root.id, self._active_atom, 1)
        if prop is None or len(prop[1]) == 0:
            return None
        return int(prop[1][0]) or None

    def _text(self, window: int, atom: int, longs: int) -> str | None:
        prop = self._property(window, atom, longs)
        if prop is None:
            return None
        kind, value = prop
        data = value if isinstance(value, bytes) else bytes(value)
        if kind == Xatom.STRING:
            # STRING is Latin-1 by definition, but many clients (xdotool among them)
            # store UTF-8 there; real Latin-1 text is almost never valid UTF-8.
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        if kind == self._compound_atom:
            return decode_compound_text(data)
        return data.decode("utf-8", errors="replace")  # UTF8_STRING

    def title(self, window: int) -> str | None:
        """``_NET_WM_NAME``, else ``WM_NAME``; None when the window is gone."""
        for atom in self._name_atoms:
            text = self._text(window, atom, _TITLE_LONGS)
            if text:
                return text
        try:  # no title at all: distinguish an untitled window from a vanished one
            self._d.create_resource_object("window", window).get_attributes()
        except error.XError:
            return None
        except (error.ConnectionClosedError, OSError) as exc:
            raise X11Error(f"lost X display {self.name!r}: {exc}") from None
        return ""

    def window_props(self, window: int) -> WindowProps | None:
        """Title, WM_CLASS and pid of ``window``; None when it no longer exists."""
        title = self.title(window)
        if title is None:
            return None
        instance, _, wm_class = (self._text(window, Xatom.WM_CLASS, 64) or "").partition("\0")
        pid: int | None = None
        prop = self._property(window, self._pid_atom, 1)
        if prop is not None and len(prop[1]) == 1:
            pid = int(prop[1][0]) or None
        machine = self._text(window, Xatom.WM_CLIENT_MACHINE, 64)
        if machine and machine != self._hostname:
            pid = None  # a remote client's pid means nothing here
        return WindowProps(window, title, instance, wm_class.rstrip("\0"), pid)

    def idle_ms(self) -> int | None:
        """Milliseconds since the last keyboard or pointer input; None without the
        MIT-SCREEN-SAVER extension."""
        if not self.has_idle:
            return None
        try:
            return int(self._root.screensaver_query_info().idle)
        except (error.ConnectionClosedError, OSError) as exc:
            raise X11Error(f"lost X display {self.name!r}: {exc}") from None

    # -- events ------------------------------------------------------------------
    def watch(self, window: int | None) -> None:
        """Report title changes of ``window`` (and stop reporting the previous one)."""
        if (window or 0) == self._watched:
            return
        if self._watched:
            self._d.create_resource_object("window", self._watched).change_attributes(
                event_mask=X.NoEventMask
            )
        if window:
            # StructureNotify: a closed window may stay _NET_ACTIVE_WINDOW (openbox
            # leaves it there), so its destruction is a change of the active window.
            self._d.create_resource_object("window", window).change_attributes(
                event_mask=X.PropertyChangeMask | X.StructureNotifyMask
            )
        self._watched = window or 0
        self._d.flush()

    def wait(self, timeout: float) -> set[str]:
        """Block up to ``timeout`` seconds for changes; returns what changed:
        ``"active"`` (the active window changed, or the watched window closed) and/or
        ``"title"`` (the watched window's title)."""
        try:
            if not self._d.pending_events():
                select.select([self._d.fileno()], [], [], max(timeout, 0.0))
            changes: set[str] = set()
            while self._d.pending_events():
                event = self._d.next_event()
                if event.type in (X.DestroyNotify, X.UnmapNotify):
                    if event.window.id == self._watched:
                        changes.add("active")
                    continue
                if event.type != X.PropertyNotify:
                    continue
                if event.window.id == self._root.id and event.atom == self._active_atom:
                    changes.add("active")
                elif event.window.id == self._watched and event.atom in self._name_atoms:
                    changes.add("title")
            return changes
        except (error.ConnectionClosedError, OSError) as exc:
            raise X11Error(f"lost X display {self.name!r}: {exc}") from None
