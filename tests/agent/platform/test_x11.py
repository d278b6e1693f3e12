"""The X11 platform layer against a real Xvfb + openbox with real xterm windows."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from sekimori.agent.platform.linux.x11 import (
    X11Connection,
    X11Error,
    client_process,
    decode_compound_text,
)
from tests.desktop import Desktop, desktop_fixture  # noqa: F401  (the fixture)

WAIT = 10.0


def _wait_for_change(conn: X11Connection, what: str) -> None:
    """Collect ``conn.wait`` results until ``what`` was reported (with a deadline)."""
    deadline = time.monotonic() + WAIT
    while what not in conn.wait(0.5):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what!r} change reported within {WAIT} s")


def test_connect_needs_the_sessions_cookie(desktop: Desktop, tmp_path: Path) -> None:
    """The display refuses clients without its cookie, like a real login session."""
    with pytest.raises(X11Error, match="cannot open X display"):
        X11Connection(desktop.display, str(tmp_path / "no-such-cookie-file"))
    with X11Connection(desktop.display, str(desktop.xauthority)) as conn:
        assert conn.has_idle


def test_wild_cookie_entries_are_accepted(desktop: Desktop, tmp_path: Path) -> None:
    """gdm writes FamilyWild (0xffff) entries; python-xlib's own lookup ignores them."""
    listing = subprocess.run(
        ["xauth", "-f", str(desktop.xauthority), "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cookie = bytes.fromhex(listing.split()[-1])

    def counted(data: bytes) -> bytes:
        return struct.pack(">H", len(data)) + data

    wild = tmp_path / "wild"
    wild.write_bytes(
        struct.pack(">H", 0xFFFF)
        + counted(b"")
        + counted(desktop.display.lstrip(":").encode())
        + counted(b"MIT-MAGIC-COOKIE-1")
        + counted(cookie)
    )
    with X11Connection(desktop.display, str(wild)) as conn:
        assert conn.active_window() is None


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_cookie_path_that_is_not_a_file_is_refused_quickly(
    desktop: Desktop, tmp_path: Path, kind: str
) -> None:
    """Discovery takes the cookie path from users' process environments: a FIFO must
    not block the agent, nor /dev/zero fill its memory. Either is simply no cookie."""
    path = tmp_path / "cookie"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    with pytest.raises(X11Error, match="cannot open X display"):
        X11Connection(desktop.display, str(path))


def test_local_entry_for_another_host_is_not_used(desktop: Desktop, tmp_path: Path) -> None:
    other = tmp_path / "other-host"
    cookie = b"\x01" * 16
    other.write_bytes(
        struct.pack(">HH", 256, 9)
        + b"elsewhere"
        + struct.pack(">H", 1)
        + desktop.display.lstrip(":").encode()
        + struct.pack(">H", 18)
        + b"MIT-MAGIC-COOKIE-1"
        + struct.pack(">H", 16)
        + cookie
    )
    assert socket.gethostname() != "elsewhere"
    with pytest.raises(X11Error):
        X11Connection(desktop.display, str(other))


def test_active_window_and_its_client(desktop: Desktop) -> None:
    first = desktop.xterm("first window")
    second = desktop.xterm("second window")
    with X11Connection(desktop.display, str(desktop.xauthority)) as conn:
        desktop.focus(first.window)
        assert conn.active_window() == first.window
        props = conn.window_props(first.window)
        assert props is not None
        assert (props.title, props.instance, props.wm_class) == ("first window", "xterm", "XTerm")
        assert props.pid == first.pid
        client = client_process(first.pid)
        assert client.exe == "/usr/bin/xterm"
        assert client.uid == os.getuid()
        desktop.focus(second.window)
        _wait_for_change(conn, "active")
        assert conn.active_window() == second.window


def test_title_changes_are_events(desktop: Desktop) -> None:
    """Both ways a title changes: the program itself (an OSC escape printed inside
    xterm, which sets _NET_WM_NAME as UTF-8) and another client (xdotool, which stores
    UTF-8 bytes in the Latin-1 WM_NAME)."""
    term = desktop.xterm("before")
    with X11Connection(desktop.display, str(desktop.xauthority)) as conn:
        conn.watch(term.window)
        term.write("\033]0;after – ünïcode\007")
        _wait_for_change(conn, "title")
        assert conn.title(term.window) == "after – ünïcode"
        desktop.set_title(term.window, "renamed ü")
        _wait_for_change(conn, "title")
        assert conn.title(term.window) == "renamed ü"


@pytest.mark.parametrize(
    "title",
    [
        "報告書.docx",  # JIS X 0208
        "中文报告",  # GB 2312
        "한국어 보고서",  # KS C 5601
        "Отчёт",  # ISO 8859-5
        "Ελληνικά",  # ISO 8859-7
        "€ 100",  # ISO 8859-15
        "mixed 日本語, Ελλάδα and ü",  # several sets in one title
        "emoji 🙂",  # outside every ISO 2022 set: a UTF-8 or extended segment
    ],
)
def test_compound_text_titles(desktop: Desktop, title: str) -> None:
    """Older toolkits title windows in COMPOUND_TEXT only (no _NET_WM_NAME). libX11
    itself encodes the title here (xprop's "8t" format), so the bytes are real."""
    term = desktop.xterm("plain")
    subprocess.run(
        ["xprop", "-id", str(term.window), "-f", "WM_NAME", "8t", "-set", "WM_NAME", title],
        env=desktop.env,
        check=True,
        timeout=10,
    )
    kind = subprocess.run(
        ["xprop", "-id", str(term.window), "WM_NAME", "_NET_WM_NAME"],
        env=desktop.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert "WM_NAME(COMPOUND_TEXT)" in kind
    assert "_NET_WM_NAME:  not found" in kind
    with X11Connection(desktop.display, str(desktop.xauthority)) as conn:
        assert conn.title(term.window) == title


def test_compound_text_decoder_never_fails() -> None:
    """Whatever bytes a client stores, decoding yields text (U+FFFD for the unknown)."""
    samples = [b"\x1b", b"\x1b$", b"\x1b%/", b"\x1b%/1\x80\x88nosuch\x02\xa4@", b"\xff\x1b$(Z!!"]
    for data in samples:
        assert isinstance(decode_compound_text(data), str)
    assert decode_compound_text(b"a\x1b%/1\x80\x8ciso8859-15\x02\xa4b") == "a€b"


def test_unwatched_windows_report_no_title_change(desktop: Desktop) -> None:
    watched = desktop.xterm("watched")
    other = desktop.xterm("other")
    with X11Connection(desktop.display, str(desktop.xauthority)) as conn:
        conn.watch(other.window)
        conn.watch(watched.window)  # replaces the watch on ``other``
        desktop.set_title(other.window, "other renamed")
        desktop.set_title(watched.window, "watched renamed")
        seen: set[str] = set()
        deadline = time.monotonic() + WAIT
        # The rename of the watched window comes after the other's: once it is seen,
        # any report about ``other`` would have arrived too.
        while conn.title(watched.window) != "watched renamed" or "title" not in seen:
            seen |= conn.wait(0.2)
            assert time.monotonic() < deadline, "watched window's rename not reported"
        assert conn.title(other.window) == "other renamed"


def test_vanished_window_reads_as_none(desktop: Desktop) -> None:
    term = desktop.xterm("short-lived")
    with X11Connection(desktop.display, str(desktop.xauthority)) as conn:
        assert conn.window_props(term.window) is not None
        term.proc.terminate()
        term.proc.wait(10)
        deadline = time.monotonic() + WAIT
        while conn.window_props(term.window) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert conn.title(term.window) is None


def test_idle_time_grows_and_input_resets_it(desktop: Desktop) -> None:
    with X11Connection(desktop.display, str(desktop.xauthority)) as conn:
        first = conn.idle_ms()
        assert first is not None
        deadline = time.monotonic() + WAIT
        while (conn.idle_ms() or 0) < first + 300:
            assert time.monotonic() < deadline, "idle time does not grow"
            time.sleep(0.05)
        before = conn.idle_ms()
        assert before is not None
        desktop.xdotool("mousemove", "200", "200")
        after = conn.idle_ms()
        assert after is not None
        assert after < before


def test_lost_server_is_an_error(desktop: Desktop) -> None:
    """Closing the X server (a logout) turns into X11Error, not a hang or a crash."""
    conn = X11Connection(desktop.display, str(desktop.xauthority))
    try:
        desktop.server.terminate()
        desktop.server.wait(10)
        with pytest.raises(X11Error, match="lost X display"):
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                conn.wait(0.2)
                conn.active_window()
    finally:
        conn.close()


def test_client_process_of_a_gone_pid(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    client = client_process(proc.pid)
    assert client.exe == ""
    assert client.uid is None
