"""The real programs the collector workload drives: an X desktop and a Chromium.

* ``running_desktop``: Xvfb on a display it picks itself (``-displayfd``), with a
  cookie (the server refuses clients without it, as a login session does), openbox as
  the window manager, and xterm windows; focus is changed through the window manager
  (``xdotool windowactivate``), so ``_NET_ACTIVE_WINDOW`` is set by openbox itself.
* ``Chromium``: Debian's Chromium, headless, on a user data directory of the caller's
  choosing, with a DevTools endpoint used as the bench's remote control (open a tab,
  close a tab, quit the way a user quits so the history is written).
* ``Pages``: HTML pages with distinct titles served on 127.0.0.1.

Everything started here is stopped by the context managers and ``close`` methods,
also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sekimori.bench._server import BenchmarkFailed

__all__ = [
    "CHROMIUM",
    "REQUIRED_PROGRAMS",
    "Chromium",
    "Desktop",
    "Pages",
    "missing_programs",
    "running_desktop",
]

CHROMIUM = "chromium"
# Program -> the Debian package that provides it.
REQUIRED_PROGRAMS: dict[str, str] = {
    "Xvfb": "xvfb",
    "openbox": "openbox",
    "xterm": "xterm",
    "xdotool": "xdotool",
    "xauth": "xauth",
    "xprop": "x11-utils",
    CHROMIUM: "chromium",
}
_START_TIMEOUT = 30.0
_COMMAND_TIMEOUT = 15.0
_SCREEN = "1280x800x24"
_XVFB_ARGS = ("-nolisten", "tcp")


def missing_programs() -> list[str]:
    """The required programs that are not on PATH, as "program (package)"."""
    return [
        f"{program} ({package})"
        for program, package in REQUIRED_PROGRAMS.items()
        if shutil.which(program) is None
    ]


def _exe(program: str) -> str:
    """The full path of a required program (``missing_programs`` was checked first)."""
    path = shutil.which(program)
    if path is None:
        raise BenchmarkFailed(f"{program} is not installed ({REQUIRED_PROGRAMS[program]})")
    return path


def _terminate(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Desktop:
    """A running Xvfb + openbox. Build it with ``running_desktop``."""

    def __init__(self, display: str, xauthority: Path, stack: ExitStack) -> None:
        self.display = display
        self.xauthority = xauthority
        self._stack = stack
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "DISPLAY", "XAUTHORITY")
            and not k.startswith("SEKIMORI_")
        }
        self.env.update(DISPLAY=display, XAUTHORITY=str(xauthority))

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start an X client on this display; it is terminated when the desktop stops."""
        proc = subprocess.Popen(
            list(argv),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._stack.callback(_terminate, proc)
        return proc

    def run(self, *argv: str) -> str:
        """Run an X client to completion; returns its stdout. Raises BenchmarkFailed."""
        try:
            done = subprocess.run(
                list(argv),
                env=self.env,
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchmarkFailed(f"{' '.join(argv)} did not finish") from None
        if done.returncode != 0:
            raise BenchmarkFailed(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        return done.stdout

    def xterm(self, title: str) -> int:
        """Open an xterm titled ``title`` (running ``sleep``); returns its window id."""
        proc = self.spawn([_exe("xterm"), "-T", title, "-e", "sleep", "86400"])
        xdotool, name = _exe("xdotool"), ["--name", f"^{re.escape(title)}$"]
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            done = subprocess.run(
                [xdotool, "search", "--onlyvisible", "--pid", str(proc.pid), *name],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
            ids = done.stdout.split()
            if done.returncode == 0 and ids:
                return int(ids[0])
            if proc.poll() is not None:
                raise BenchmarkFailed(f"xterm exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"no xterm window titled {title!r} after {_START_TIMEOUT} s")
            time.sleep(0.05)

    def active_window(self) -> int:
        """The window the window manager says is active (0 when none)."""
        out = self.run(_exe("xprop"), "-root", "_NET_ACTIVE_WINDOW")
        match = re.search(r"# (0x[0-9a-f]+)", out)
        return int(match.group(1), 16) if match else 0

    def activate(self, window: int) -> bool:
        """Focus ``window`` through the window manager; True once it is the active one.

        (openbox clears ``_NET_ACTIVE_WINDOW`` for a moment while it switches, so the
        result is read again until it names a window.)"""
        self.run(_exe("xdotool"), "windowactivate", "--sync", str(window))
        deadline = time.monotonic() + _COMMAND_TIMEOUT
        while (active := self.active_window()) != window:
            if active or time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def _start_xvfb(xauthority: Path, stack: ExitStack, screen: str = _SCREEN) -> str:
    """Start Xvfb on a display number it picks itself; returns ``":N"``."""
    cookie = secrets.token_hex(16)
    # The server accepts every cookie of its -auth file whatever display the entry
    # names; clients look theirs up by display, so their file gets the real number.
    server_auth = xauthority.with_suffix(".server")
    subprocess.run(
        [_exe("xauth"), "-q", "-f", str(server_auth), "add", ":0", ".", cookie],
        check=True,
        timeout=_COMMAND_TIMEOUT,
        capture_output=True,
    )
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [
                _exe("Xvfb"),
                "-displayfd",
                str(write_fd),
                "-auth",
                str(server_auth),
                *("-screen", "0", screen),
                *_XVFB_ARGS,
            ],
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(_terminate, proc)
        os.close(write_fd)
        write_fd = -1
        # Xvfb writes "N\n" once it accepts connections.
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(read_fd, 64)
            if not chunk:
                raise BenchmarkFailed(f"Xvfb exited before announcing a display ({proc.wait()})")
            data += chunk
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    display = f":{data.decode().strip()}"
    subprocess.run(
        [_exe("xauth"), "-q", "-f", str(xauthority), "add", display, ".", cookie],
        check=True,
        timeout=_COMMAND_TIMEOUT,
        capture_output=True,
    )
    return display


@contextlib.contextmanager
def running_desktop(workdir: Path, screen: str = _SCREEN) -> Iterator[Desktop]:
    """Xvfb + openbox with their files under ``workdir``; everything stops on exit.
    ``screen``: Xvfb's screen, WIDTHxHEIGHTxDEPTH."""
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        xauthority = workdir / "Xauthority"
        desktop = Desktop(_start_xvfb(xauthority, stack, screen), xauthority, stack)
        desktop.spawn([_exe("openbox"), "--sm-disable"])
        deadline = time.monotonic() + _START_TIMEOUT
        # openbox is ready once it advertises itself on the root window (EWMH).
        while "window id" not in desktop.run(_exe("xprop"), "-root", "_NET_SUPPORTING_WM_CHECK"):
            if time.monotonic() > deadline:
                raise BenchmarkFailed("openbox did not start")
            time.sleep(0.05)
        yield desktop


class Pages:
    """HTML pages titled by their path, served on 127.0.0.1 from a thread:
    ``/<name>`` answers ``<title>Sekimori bench <name></title>``."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/")
                if not re.fullmatch(r"[a-z0-9-]{1,64}", name):
                    self.send_error(404)
                    return
                title = Pages.title(name)
                data = f"<html><head><title>{title}</title></head><body>{title}</body></html>"
                body = data.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def title(name: str) -> str:
        return f"Sekimori bench {name}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class Chromium:
    """A real headless Chromium on ``user_data_dir``, remote-controlled over DevTools
    (the bench's control channel, standing in for a user clicking)."""

    def __init__(self, user_data_dir: Path, url: str, env: dict[str, str]) -> None:
        self.user_data_dir = user_data_dir
        args = [
            _exe(CHROMIUM),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--password-store=basic",
            "--remote-debugging-port=0",
            f"--user-data-dir={user_data_dir}",
            url,
        ]
        # Its own session, so close() can end it with its helper processes.
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._port: int | None = None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def _devtools(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port()}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            body = response.read()
        try:
            return json.loads(body)
        except ValueError:
            return body.decode("utf-8", "replace")

    def port(self, timeout: float = _START_TIMEOUT) -> int:
        port_file = self.user_data_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while self._port is None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                self._port = int(port_file.read_text().split()[0])
            if self._port is None:
                if not self.running:
                    raise BenchmarkFailed(f"Chromium exited with status {self.proc.returncode}")
                if time.monotonic() > deadline:
                    raise BenchmarkFailed("Chromium did not open its DevTools endpoint")
                time.sleep(0.1)
        return self._port

    def tabs(self) -> list[dict[str, Any]]:
        found = self._devtools("/json/list")
        return (
            [tab for tab in found if tab.get("type") == "page"] if isinstance(found, list) else []
        )

    def open(self, url: str) -> str:
        """Open ``url`` in a new tab; returns the tab's id."""
        tab = self._devtools(f"/json/new?{url}", method="PUT")
        if not isinstance(tab, dict) or "id" not in tab:
            raise BenchmarkFailed(f"Chromium did not open a tab: {tab!r}")
        return str(tab["id"])

    def close_tab(self, tab_id: str) -> None:
        self._devtools(f"/json/close/{tab_id}")

    def wait_for_title(self, title: str, timeout: float = _START_TIMEOUT) -> None:
        """Wait until a tab shows ``title``: the page is loaded and the browser knows it."""
        deadline = time.monotonic() + timeout
        while not any(tab.get("title") == title for tab in self.tabs()):
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"no Chromium tab titled {title!r}")
            time.sleep(0.1)

    def close(self) -> None:
        """Quit as a user would, so Chromium writes the history it still holds (on
        SIGTERM it exits without committing the visits of its last ~10 s)."""
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        if self.running and self._port is not None:
            with contextlib.suppress(OSError, ValueError, WebSocketException):
                version = self._devtools("/json/version")
                with connect(version["webSocketDebuggerUrl"], open_timeout=10) as channel:
                    channel.send(json.dumps({"id": 1, "method": "Browser.close"}))
                    channel.recv(timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Helpers (zygote, renderers) of its session that outlived the browser.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
