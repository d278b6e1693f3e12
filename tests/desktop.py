"""A real X desktop for tests: Xvfb on a free display, openbox, xterm windows, xdotool.

Nothing is faked: the display is a real X server with a real window manager, so the
EWMH properties collectors read (``_NET_ACTIVE_WINDOW``, ``_NET_WM_PID`` ...) are set
by openbox and the applications themselves.

Use it in a test module either through the ``desktop`` fixture::

    from tests.desktop import Desktop, desktop_fixture  # noqa: F401  (pytest needs it)

(importing it as ``desktop`` works too, but ruff then flags every test parameter of
that name as a redefinition, F811).

    def test_something(desktop: Desktop) -> None:
        term = desktop.xterm("first")
        desktop.focus(term.window)
        subprocess.run(["chromium", ...], env=desktop.env)   # or desktop.spawn([...])

or, for a wider scope, ``with running_desktop(some_dir) as desktop: ...``.

The API, kept small on purpose:

* ``Desktop.display`` (``":N"``), ``Desktop.xauthority`` (the cookie file; the server
  refuses clients without it, as a real login session does) and ``Desktop.env``
  (``os.environ`` plus ``DISPLAY``/``XAUTHORITY``, minus Wayland variables) — pass
  ``env=desktop.env`` to any X client you run.
* ``spawn(argv)`` starts a long-lived X client; it is terminated at teardown.
* ``xterm(title, args=())`` opens a real xterm and waits until its window is mapped; the
  returned ``XTerm`` has ``window`` (X id), ``pid`` and ``write(text)``, which the
  shell inside prints to the terminal (so escape sequences such as
  ``"\\033]0;new title\\007"`` really go through xterm).
* ``wait_window(name)`` waits for a visible window whose title matches a regex.
* ``focus(window)`` activates a window through the window manager (xdotool
  ``windowactivate --sync``) and checks it became ``_NET_ACTIVE_WINDOW``.
* ``active_window()``, ``set_title(window, title)``, ``xdotool(*args)``.
* ``server``: the Xvfb process (terminate it to simulate the session ending).

Displays are chosen by Xvfb itself (``-displayfd``), so parallel tests and other
engineers' Xvfb instances never collide.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "Desktop",
    "XTerm",
    "desktop",
    "desktop_available",
    "desktop_fixture",
    "running_desktop",
]

_TOOLS = ("Xvfb", "openbox", "xterm", "xdotool", "xauth", "xprop")
_START_TIMEOUT = 15.0


def desktop_available() -> bool:
    """True when every program the desktop needs is installed."""
    return all(shutil.which(tool) for tool in _TOOLS)


@dataclass
class XTerm:
    """A real xterm window. ``write`` prints text inside the terminal."""

    window: int
    pid: int
    title: str
    fifo: Path
    proc: subprocess.Popen[bytes]

    def write(self, text: str) -> None:
        """Have the shell in the terminal print ``text`` verbatim (escapes included)."""
        with self.fifo.open("w") as fifo:
            fifo.write(text)


class Desktop:
    """A running Xvfb + openbox. Build it with ``running_desktop`` or the fixture."""

    def __init__(
        self,
        display: str,
        xauthority: Path,
        workdir: Path,
        stack: ExitStack,
        server: subprocess.Popen[bytes],
    ) -> None:
        self.display = display
        self.server = server
        """The Xvfb process (terminate it to simulate the session ending)."""
        self.xauthority = xauthority
        self._workdir = workdir
        self._stack = stack
        self._count = 0
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "DISPLAY", "XAUTHORITY")
        }
        self.env.update(DISPLAY=display, XAUTHORITY=str(xauthority))

    # -- processes ---------------------------------------------------------------
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

    def xdotool(self, *args: str) -> str:
        """Run xdotool on this display; returns its stdout. Raises on failure."""
        done = subprocess.run(
            ["xdotool", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"xdotool {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    # -- windows -----------------------------------------------------------------
    def xterm(self, title: str, args: Sequence[str] = ()) -> XTerm:
        """Open an xterm titled ``title``; returns once its window is mapped.

        ``args``: more xterm options, e.g. ``("-name", "mail")`` for another WM_CLASS
        instance name."""
        self._count += 1
        fifo = self._workdir / f"xterm-{self._count}.fifo"
        os.mkfifo(fifo)
        # The shell copies whatever is written to the fifo onto the terminal, so a test
        # can make xterm itself change its title with an OSC escape sequence.
        script = 'while :; do cat "$0"; done'
        # wmTimeout: now and then Xt's shell waits for a window manager reply that never
        # comes while xterm sizes its window before mapping it; the default is 5 s.
        command = ["sh", "-c", script, str(fifo)]
        # Registered first so that it runs after xterm is stopped: a shell that xterm
        # had not yet handed its terminal to would survive xterm, blocked on the fifo.
        self._stack.callback(_kill_processes_naming, fifo)
        proc = self.spawn(["xterm", "-xrm", "*wmTimeout: 100", *args, "-T", title, "-e", *command])
        window = self.wait_window(re.escape(title), pid=proc.pid)
        return XTerm(window=window, pid=proc.pid, title=title, fifo=fifo, proc=proc)

    def wait_window(
        self, name_regex: str, *, pid: int | None = None, timeout: float = _START_TIMEOUT
    ) -> int:
        """Wait for a visible window whose whole title matches; returns its X id."""
        args = ["search", "--onlyvisible"]
        if pid is not None:
            args += ["--pid", str(pid)]
        args += ["--name", f"^{name_regex}$"]
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                ["xdotool", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            ids = done.stdout.split()
            if done.returncode == 0 and ids:
                return int(ids[0])
            if time.monotonic() > deadline:
                raise AssertionError(f"no window titled {name_regex!r} after {timeout} s")
            time.sleep(0.05)

    def active_window(self) -> int:
        """The window the window manager says is active (0 when none)."""
        out = subprocess.run(
            ["xprop", "-root", "_NET_ACTIVE_WINDOW"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT,
            check=True,
        ).stdout
        match = re.search(r"# (0x[0-9a-f]+)", out)
        return int(match.group(1), 16) if match else 0

    def focus(self, window: int) -> None:
        """Activate ``window`` through the window manager and wait until it is active."""
        self.xdotool("windowactivate", "--sync", str(window))
        deadline = time.monotonic() + _START_TIMEOUT
        while self.active_window() != window:
            if time.monotonic() > deadline:
                raise AssertionError(f"window {window:#x} did not become active")
            time.sleep(0.02)

    def set_title(self, window: int, title: str) -> None:
        """Rename ``window`` from outside (sets WM_NAME and _NET_WM_NAME)."""
        self.xdotool("set_window", "--name", title, str(window))


def _kill_processes_naming(path: Path) -> None:
    """SIGKILL the processes whose command line names ``path`` (a unique fifo)."""
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue  # gone meanwhile


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start_xvfb(xauthority: Path, stack: ExitStack) -> tuple[str, subprocess.Popen[bytes]]:
    """Start Xvfb on a display number it picks itself; returns ``":N"`` and Xvfb."""
    cookie = secrets.token_hex(16)
    # The server accepts every cookie in its -auth file whatever display number the
    # entry names; clients look theirs up by display, so the entry is rewritten below.
    server_auth = xauthority.with_suffix(".server")
    subprocess.run(
        ["xauth", "-q", "-f", str(server_auth), "add", ":0", ".", cookie],
        check=True,
        timeout=10,
        capture_output=True,  # "file does not exist" is xauth creating it
    )
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-auth",
                str(server_auth),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
                # Without it the server resets whenever its last client disconnects,
                # and a client connecting during the reset is refused (a probe that
                # closes just before openbox connects would make openbox fail).
                "-noreset",
            ],
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(_terminate, proc)
        os.close(write_fd)
        write_fd = -1
        # Xvfb writes "N\n" once it accepts connections; read to the newline, since
        # closing the pipe early makes Xvfb die on the second write.
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(read_fd, 64)
            if not chunk:
                raise AssertionError(f"Xvfb exited before announcing a display ({proc.wait()})")
            data += chunk
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    display = f":{data.decode().strip()}"
    subprocess.run(
        ["xauth", "-q", "-f", str(xauthority), "add", display, ".", cookie],
        check=True,
        timeout=10,
        capture_output=True,
    )
    return display, proc


@contextmanager
def running_desktop(workdir: Path) -> Iterator[Desktop]:
    """Run Xvfb + openbox with files under ``workdir``; stops everything on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        xauthority = workdir / "Xauthority"
        display, server = _start_xvfb(xauthority, stack)
        desk = Desktop(display, xauthority, workdir, stack, server)
        log = workdir / "openbox.log"
        with log.open("wb") as out:
            wm = subprocess.Popen(
                ["openbox", "--sm-disable"],
                env=desk.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        stack.callback(_terminate, wm)
        deadline = time.monotonic() + _START_TIMEOUT
        # openbox is ready once it advertises itself on the root window (EWMH).
        while (
            "window id"
            not in subprocess.run(
                ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"],
                env=desk.env,
                capture_output=True,
                text=True,
                timeout=_START_TIMEOUT,
                check=False,
            ).stdout
        ):
            if time.monotonic() > deadline or wm.poll() is not None:
                state = "running" if wm.poll() is None else f"exited with {wm.returncode}"
                raise AssertionError(
                    f"openbox did not start on {display} ({state}): {log.read_text()[-2000:]}"
                )
            time.sleep(0.05)
        yield desk


@pytest.fixture(name="desktop")
def desktop_fixture() -> Iterator[Desktop]:
    """A fresh Xvfb + openbox for one test. Skips when the X tools are missing."""
    if not desktop_available():
        if os.environ.get("CI"):
            pytest.fail(f"needs {', '.join(_TOOLS)}: run scripts/system-deps.sh")
        pytest.skip(f"needs {', '.join(_TOOLS)} (scripts/system-deps.sh installs them)")
    # A short private directory: fifos and cookies, removed with the desktop.
    with tempfile.TemporaryDirectory(prefix="desk-") as tmp, running_desktop(Path(tmp)) as desk:
        yield desk


# The first published name of the fixture; kept so existing imports keep working.
desktop = desktop_fixture
