"""Choosing the X display: settings, environment, Wayland, and discovery from /proc.

Discovery runs against the real /proc: the tests start real processes whose
environment names a display, and real Unix sockets stand in for X servers in a
private socket folder (an X server's socket is exactly that: a listening Unix socket
named ``X<n>``).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from sekimori.agent.platform.linux.display import (
    DisplayTarget,
    NoDisplay,
    RemoteDisplay,
    WaylandSession,
    find_display,
    session_displays,
    wayland_reason,
    x_display_numbers,
)
from tests.desktop import Desktop, desktop_fixture  # noqa: F401  (the fixture)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def _x_socket(folder: Path, number: int, stack: ExitStack) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stack.callback(sock.close)
    sock.bind(str(folder / f"X{number}"))
    sock.listen(1)


def _session_process(env: dict[str, str], stack: ExitStack) -> subprocess.Popen[bytes]:
    """A real process whose environment says which session it belongs to."""
    proc = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], **env})
    stack.callback(proc.wait)
    stack.callback(proc.kill)
    return proc


def test_wayland_is_recognised_from_the_environment() -> None:
    assert wayland_reason({"WAYLAND_DISPLAY": "wayland-0"}) == "WAYLAND_DISPLAY=wayland-0"
    assert wayland_reason({"XDG_SESSION_TYPE": "wayland"}) == "XDG_SESSION_TYPE=wayland"
    assert wayland_reason({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}) is None
    assert wayland_reason({"WAYLAND_DISPLAY": ""}) is None


def test_settings_come_first(tmp_path: Path) -> None:
    env = {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":5", "XAUTHORITY": "/env/cookie"}
    target = find_display(display=":3", xauthority="/set/cookie", env=env, socket_dir=tmp_path)
    assert target == DisplayTarget(":3", "/set/cookie", None, "settings")
    target = find_display(display=":3", env=env, socket_dir=tmp_path)
    assert target.xauthority == "/env/cookie"


@pytest.mark.parametrize("display", ["example.org:0", "10.0.0.5:0.0", "[::1]:0", "garbage"])
def test_remote_displays_are_refused(tmp_path: Path, display: str) -> None:
    """python-xlib would dial TCP to the host: collectors never use the network."""
    with pytest.raises(RemoteDisplay, match="not a local X display"):
        find_display(display=display, env={}, socket_dir=tmp_path)
    with pytest.raises(RemoteDisplay, match="DISPLAY"):
        find_display(env={"DISPLAY": display}, socket_dir=tmp_path)


@pytest.mark.parametrize("display", [":0", ":1.0", "unix:2", "localhost:10.0"])
def test_local_displays_are_accepted(tmp_path: Path, display: str) -> None:
    assert find_display(display=display, env={}, socket_dir=tmp_path).display == display


def test_environment_display(tmp_path: Path) -> None:
    target = find_display(env={"DISPLAY": ":7", "XAUTHORITY": "/c"}, socket_dir=tmp_path)
    assert target == DisplayTarget(":7", "/c", None, "environment")
    target = find_display(xauthority="/mine", env={"DISPLAY": ":7"}, socket_dir=tmp_path)
    assert target.xauthority == "/mine"


def test_wayland_environment_is_refused_even_with_xwayland(tmp_path: Path) -> None:
    """XWayland's DISPLAY sees only X clients: the active window would be wrong."""
    for env in ({"WAYLAND_DISPLAY": "wayland-0"}, {"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"}):
        with pytest.raises(WaylandSession, match="unavailable on Wayland"):
            find_display(env=env, socket_dir=tmp_path)


def test_no_display_at_all(tmp_path: Path) -> None:
    empty_proc = tmp_path / "proc"
    empty_proc.mkdir()
    with pytest.raises(NoDisplay, match="no X display"):
        find_display(env={}, socket_dir=tmp_path / "no-such-dir", proc=empty_proc)
    assert x_display_numbers(tmp_path / "no-such-dir") == []


def test_socket_folder_lists_displays(tmp_path: Path, stack: ExitStack) -> None:
    for number in (12, 3):
        _x_socket(tmp_path, number, stack)
    (tmp_path / "Xnot-a-display").touch()
    assert x_display_numbers(tmp_path) == [3, 12]


def test_discovery_reads_session_processes(tmp_path: Path, stack: ExitStack) -> None:
    """A root agent finds the display and cookie from the session's own processes."""
    number = random.randint(5000, 9000)  # noqa: S311 - not security, avoids other tests
    _x_socket(tmp_path, number, stack)
    _x_socket(tmp_path, number + 1, stack)  # a live server no session points at
    for _ in range(2):
        _session_process({"DISPLAY": f":{number}.0", "XAUTHORITY": "/run/cookie"}, stack)
    # A process that names a display with no live socket is ignored.
    _session_process({"DISPLAY": f":{number + 2}", "XAUTHORITY": "/stale"}, stack)
    sessions, _ = session_displays(tmp_path)
    assert sessions[0] == DisplayTarget(f":{number}", "/run/cookie", os.getuid(), "discovered")
    assert [s.display for s in sessions] == [f":{number}"]
    target = find_display(env={}, socket_dir=tmp_path)
    assert target == sessions[0]
    assert find_display(env={}, xauthority="/override", socket_dir=tmp_path).xauthority == (
        "/override"
    )


def test_discovery_falls_back_to_a_live_socket(tmp_path: Path, stack: ExitStack) -> None:
    number = random.randint(5000, 9000)  # noqa: S311
    _x_socket(tmp_path, number, stack)
    target = find_display(env={}, socket_dir=tmp_path)
    assert target == DisplayTarget(f":{number}", None, None, "discovered")


def test_discovered_wayland_session_is_refused(tmp_path: Path, stack: ExitStack) -> None:
    number = random.randint(5000, 9000)  # noqa: S311
    _x_socket(tmp_path, number, stack)  # XWayland's socket
    tag = f"wayland-{number}"
    _session_process({"WAYLAND_DISPLAY": tag, "DISPLAY": f":{number}"}, stack)
    sessions, wayland = session_displays(tmp_path)
    assert sessions == []
    assert f"WAYLAND_DISPLAY={tag}" in wayland
    with pytest.raises(WaylandSession, match="logged-on session is Wayland"):
        find_display(env={}, socket_dir=tmp_path)


def test_discovery_finds_a_real_x_session(desktop: Desktop) -> None:
    """Openbox and the xterms on the test desktop carry DISPLAY and XAUTHORITY."""
    desktop.xterm("session member")
    sessions, _ = session_displays()
    mine = [s for s in sessions if s.display == desktop.display]
    assert mine == [
        DisplayTarget(desktop.display, str(desktop.xauthority), os.getuid(), "discovered")
    ]
