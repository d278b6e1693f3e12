"""Actions on the people's sessions: ``message``, ``lock``, ``logoff``.

Displays: every X display the agent knows — the one its settings name (screens or
window collector), else ``$DISPLAY``, else every X session found through the
processes' environments (``session_displays``). The runtime passes them in the
``displays`` hook.

* ``message``: a window (python-xlib, drawn with Pillow like the live-view consent
  dialog) on each display, kept above the others; dismissed by a click, Enter,
  Escape or after ``MESSAGE_SECONDS``. The action is ``done`` once the windows are
  mapped (the output names the displays); the dismissal is logged by the agent. The
  window is named ``MESSAGE_TITLE`` and carries the text in ``_SEKIMORI_MESSAGE``.
* ``lock``: ``loginctl lock-sessions``, then ``xdg-screensaver lock``, then a locker
  program (xsecurelock, i3lock, xtrlock — started as the display's user when known).
  Each attempt is checked, not trusted: the screen counts as locked only once
  another client can no longer grab the keyboard (``AlreadyGrabbed``), which is what
  every X screen locker does.
* ``logoff``: ``loginctl terminate-user`` where systemd-logind runs; else SIGTERM to
  every process of the user, SIGKILL after ``LOGOFF_GRACE_SECONDS`` to those left.
  Never root, never the agent's own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import select
import shutil
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from Xlib import X, Xatom
from Xlib.error import ConnectionClosedError, XError

from sekimori.agent.actions.base import ActionContext, Outcome
from sekimori.agent.indicator import _font, _pixmap, _set_names
from sekimori.agent.platform.linux.display import (
    DisplayTarget,
    NoDisplay,
    RemoteDisplay,
    WaylandSession,
    find_display,
    session_displays,
)
from sekimori.agent.platform.linux.x11 import _open_display
from sekimori.protocol.actions import ActionParams, LockParams, LogoffParams, MessageParams

__all__ = [
    "LOCKERS",
    "LOGOFF_GRACE_SECONDS",
    "MESSAGE_SECONDS",
    "MESSAGE_TITLE",
    "keyboard_grabbed",
    "known_displays",
    "lock_screen",
    "logoff",
    "show_message",
]

log = logging.getLogger(__name__)

MESSAGE_TITLE = "Sekimori message"
MESSAGE_SECONDS = 3600.0
LOGOFF_GRACE_SECONDS = 5.0
# Locker programs tried in order (argv; each runs in the foreground and holds the grab).
LOCKERS: tuple[tuple[str, ...], ...] = (
    ("xsecurelock",),
    ("i3lock", "--nofork", "--color=000000"),
    ("xtrlock", "-b"),
)
_LOCK_CHECK_SECONDS = 5.0
_COMMAND_TIMEOUT = 10.0
_XK_RETURN = 0xFF0D
_XK_KP_ENTER = 0xFF8D
_XK_ESCAPE = 0xFF1B


def known_displays(display: str = "", xauthority: str = "") -> list[DisplayTarget]:
    """The X displays to act on (see the module docstring); empty when there is none."""
    if display or os.environ.get("DISPLAY"):
        try:
            return [find_display(display=display, xauthority=xauthority, env=os.environ)]
        except (NoDisplay, WaylandSession, RemoteDisplay):
            return []
    try:
        return session_displays()[0]
    except OSError:
        return []


def _displays(ctx: ActionContext) -> list[DisplayTarget]:
    hook = ctx.hooks.get("displays")
    found = hook() if hook is not None else known_displays()
    return list(found) if isinstance(found, list | tuple) else []


# ---- message ----------------------------------------------------------------------


def _message_window(target: DisplayTarget, title: str, text: str) -> Callable[[], str]:
    """Map the message window on ``target``; returns the function that waits for its
    dismissal (to run in a thread of its own) and says how it ended."""
    conn = _open_display(target.display, target.xauthority)
    try:
        screen = conn.screen()
        font, _ = _font(16)
        lines = [line for part in text.splitlines() for line in textwrap.wrap(part, 70) or [""]]
        lines = lines[:30]
        header = [title] if title else []
        width = 640
        height = 70 + 24 * (len(lines) + len(header)) + 50
        button = (width // 2 - 90, height - 56, width // 2 + 90, height - 16)
        image = Image.new("RGB", (width, height), (250, 250, 250))
        draw = ImageDraw.Draw(image)
        y = 20
        for line in header:
            draw.text((20, y), line, (0, 0, 0), font)
            y += 30
        for line in lines:
            draw.text((20, y), line, (20, 20, 20), font)
            y += 24
        draw.rectangle(button, fill=(24, 96, 176))
        draw.text((button[0] + 50, button[1] + 10), "OK (Enter)", (255, 255, 255), font)
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
        _set_names(conn, window, f"{MESSAGE_TITLE}: {title}" if title else MESSAGE_TITLE)
        window.change_property(
            conn.intern_atom("_SEKIMORI_MESSAGE"),
            conn.intern_atom("UTF8_STRING"),
            8,
            text.encode(),
        )
        window.change_attributes(background_pixmap=_pixmap(conn, window, image))
        window.set_wm_hints(flags=1, input=1)
        delete = conn.intern_atom("WM_DELETE_WINDOW")
        window.set_wm_protocols([delete])
        window.change_property(
            conn.intern_atom("_NET_WM_STATE"),
            Xatom.ATOM,
            32,
            [conn.intern_atom("_NET_WM_STATE_ABOVE")],
            X.PropModeReplace,
        )
        window.map()
        conn.sync()
    except BaseException:
        conn.close()
        raise

    def wait() -> str:
        return _wait_dismissed(conn, window, delete, button)

    return wait


def _wait_dismissed(conn: Any, window: Any, delete: int, button: tuple[int, ...]) -> str:
    deadline = time.monotonic() + MESSAGE_SECONDS
    # A window manager that was starting when the window was mapped may have dropped
    # the map request: map it again until it is on screen (a message must be seen).
    remap_at = time.monotonic() + 0.5
    try:
        while time.monotonic() < deadline:
            if remap_at and time.monotonic() >= remap_at:
                if window.get_attributes().map_state == X.IsViewable:
                    remap_at = 0.0
                else:
                    window.map()
                    conn.flush()
                    remap_at = time.monotonic() + 0.5
            while conn.pending_events():
                event = conn.next_event()
                if event.type == X.MapNotify:
                    window.set_input_focus(X.RevertToParent, X.CurrentTime)
                elif event.type == X.KeyPress:
                    keysym = conn.keycode_to_keysym(event.detail, 0)
                    if keysym in (_XK_RETURN, _XK_KP_ENTER, _XK_ESCAPE):
                        return "dismissed (key)"
                elif event.type == X.ButtonPress:
                    return "dismissed (click)"
                elif (
                    event.type == X.ClientMessage and event.data[1][0] == delete
                ) or event.type == X.DestroyNotify:
                    return "closed"
            time.sleep(0.05)
        return "timed out"
    except (XError, ConnectionClosedError, OSError) as exc:
        return f"display gone ({exc})"
    finally:
        with contextlib.suppress(XError, ConnectionClosedError, OSError):
            window.destroy()
            conn.sync()
        with contextlib.suppress(XError, ConnectionClosedError, OSError):
            conn.close()


async def show_message(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, MessageParams):
        raise TypeError(f"message got {type(params).__name__}")
    targets = _displays(ctx)
    if not targets:
        return Outcome(status="failed", reason="no X display to show the message on")
    shown: list[str] = []
    errors: list[str] = []
    for target in targets:
        try:
            wait = await asyncio.to_thread(_message_window, target, params.title, params.text)
        except Exception as exc:  # noqa: BLE001  # python-xlib raises many kinds
            errors.append(f"{target.display}: {exc}")
            continue
        shown.append(target.display)

        def waiter(
            wait: Callable[[], str] = wait, display: str = target.display, nonce: str = ""
        ) -> None:
            log.info("message %s on %s: %s", nonce, display, wait())

        threading.Thread(
            target=waiter, kwargs={"nonce": ctx.body.nonce}, name="action-message", daemon=True
        ).start()
    if not shown:
        return Outcome(status="failed", reason="; ".join(errors)[:2000])
    output = f"shown on {', '.join(shown)}"
    if errors:
        output += f"; not shown on {'; '.join(errors)}"
    return Outcome(status="done", output=output)


# ---- lock -------------------------------------------------------------------------


def keyboard_grabbed(target: DisplayTarget) -> bool:
    """Whether some client holds the keyboard of ``target`` (a locker does): our own
    grab then fails with AlreadyGrabbed (or Frozen)."""
    conn = _open_display(target.display, target.xauthority)
    try:
        status = conn.screen().root.grab_keyboard(
            False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime
        )
        if status == X.GrabSuccess:
            conn.ungrab_keyboard(X.CurrentTime)
            conn.sync()
            return False
        return True
    finally:
        conn.close()


def _wait_grabbed(targets: Sequence[DisplayTarget], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if all(keyboard_grabbed(t) for t in targets):
                return True
        except Exception as exc:  # noqa: BLE001  # python-xlib raises many kinds
            log.warning("lock check: %s", exc)
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _env_for(target: DisplayTarget, user: pwd.struct_passwd | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKIMORI_")}
    env.pop("WAYLAND_DISPLAY", None)
    env["DISPLAY"] = target.display
    if target.xauthority:
        env["XAUTHORITY"] = target.xauthority
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return env


def _owner(target: DisplayTarget) -> pwd.struct_passwd | None:
    """The display's user, when the agent runs as root and knows it (the locker must
    ask for that user's password, not root's)."""
    if target.uid is None or os.geteuid() != 0 or target.uid == 0:
        return None
    try:
        return pwd.getpwuid(target.uid)
    except KeyError:
        return None


def _run_quiet(argv: list[str], env: dict[str, str] | None = None) -> bool:
    try:
        done = subprocess.run(  # noqa: S603  # fixed programs, no shell
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _start_locker(argv: tuple[str, ...], target: DisplayTarget) -> int | None:
    path = shutil.which(argv[0])
    if path is None:
        return None
    user = _owner(target)
    try:
        proc = subprocess.Popen(  # noqa: S603  # fixed programs, no shell
            [path, *argv[1:]],
            env=_env_for(target, user),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=os.getgrouplist(user.pw_name, user.pw_gid) if user else None,
            cwd=user.pw_dir if user and Path(user.pw_dir).is_dir() else "/",
        )
    except OSError as exc:
        log.warning("cannot start %s: %s", argv[0], exc)
        return None
    # Reap it when the user unlocks (no zombie, and the Popen object lives as long).
    threading.Thread(target=proc.wait, name="action-locker", daemon=True).start()
    return proc.pid


def _lock(targets: list[DisplayTarget]) -> Outcome:
    if _wait_grabbed(targets, 0):
        return Outcome(status="done", output="the screen was already locked")
    if (
        shutil.which("loginctl")
        and _run_quiet(["loginctl", "lock-sessions"])
        and _wait_grabbed(targets, _LOCK_CHECK_SECONDS)
    ):
        return Outcome(status="done", output="locked by loginctl lock-sessions")
    tried: list[str] = []
    pending = list(targets)
    if shutil.which("xdg-screensaver"):
        tried.append("xdg-screensaver")
        for target in list(pending):
            if _run_quiet(["xdg-screensaver", "lock"], _env_for(target, None)) and _wait_grabbed(
                [target], _LOCK_CHECK_SECONDS
            ):
                pending.remove(target)
        if not pending:
            return Outcome(status="done", output="locked by xdg-screensaver")
    lockers: list[str] = []
    for target in list(pending):
        for argv in LOCKERS:
            pid = _start_locker(argv, target)
            if pid is None:
                continue
            if _wait_grabbed([target], _LOCK_CHECK_SECONDS):
                lockers.append(f"{target.display}: {argv[0]} (pid {pid})")
                pending.remove(target)
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    if pending:
        names = ", ".join(t.display for t in pending)
        return Outcome(
            status="failed",
            reason=f"could not lock {names}: no locker took the keyboard "
            f"(tried loginctl, {', '.join(tried) or 'no xdg-screensaver'}, "
            f"{', '.join(a[0] for a in LOCKERS)})",
        )
    return Outcome(status="done", output="locked: " + "; ".join(lockers))


async def lock_screen(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, LockParams):
        raise TypeError(f"lock got {type(params).__name__}")
    targets = _displays(ctx)
    if params.user:
        try:
            uid = pwd.getpwnam(params.user).pw_uid
        except KeyError:
            return Outcome(status="failed", reason=f"no user {params.user!r} on this PC")
        targets = [t for t in targets if t.uid in (None, uid)]
    if not targets:
        return Outcome(status="failed", reason="no X display to lock")
    return await asyncio.to_thread(_lock, targets)


# ---- logoff -----------------------------------------------------------------------


def _pids_of(uid: int) -> list[int]:
    own = os.getpid()
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in {1, own}:
            continue
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            # A zombie has already exited (its parent has yet to reap it).
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
                pids.append(pid)
        except (OSError, ValueError, IndexError, KeyError):
            continue
    return pids


def _signal_all(uid: int, sig: signal.Signals) -> list[int]:
    """Signal the user's processes through pidfds (a pid reused meanwhile is safe);
    returns the pidfds still open, for waiting."""
    fds: list[int] = []
    for pid in _pids_of(uid):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            signal.pidfd_send_signal(fd, sig)
        except OSError:
            os.close(fd)
            continue
        fds.append(fd)
    return fds


def _terminate_user(uid: int, grace: float) -> tuple[int, int]:
    """(processes signalled, processes killed after the grace period)."""
    fds = _signal_all(uid, signal.SIGTERM)
    total = len(fds)
    _wait_exits(fds, grace)
    # Rounds: a process may fork while the list is being killed (its child is then
    # found by the next round).
    killed = 0
    for _round in range(10):
        fds = _signal_all(uid, signal.SIGKILL)
        if not fds:
            break
        killed += len(fds)
        _wait_exits(fds, 2.0)
    return total, killed


def _wait_exits(fds: list[int], seconds: float) -> None:
    """Wait until the processes behind ``fds`` exit (a pidfd turns readable) or
    ``seconds`` pass; closes every fd."""
    deadline = time.monotonic() + seconds
    try:
        while fds and time.monotonic() < deadline:
            ready, _, _ = select.select(fds, [], [], max(0.0, deadline - time.monotonic()))
            for fd in ready:
                fds.remove(fd)
                os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)


def _logoff(user: pwd.struct_passwd, grace: float) -> Outcome:
    if (
        Path("/run/systemd/system").is_dir()
        and shutil.which("loginctl")
        and _run_quiet(["loginctl", "terminate-user", user.pw_name])
    ):
        return Outcome(status="done", output=f"loginctl terminate-user {user.pw_name}")
    total, killed = _terminate_user(user.pw_uid, grace)
    if total == 0:
        return Outcome(status="done", output=f"{user.pw_name} had no processes")
    left = _pids_of(user.pw_uid)
    output = f"{total} process(es) of {user.pw_name} terminated, {killed} killed after {grace:g} s"
    if left:
        return Outcome(
            status="failed", reason=f"{len(left)} process(es) still running", output=output
        )
    return Outcome(status="done", output=output)


async def logoff(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, LogoffParams):
        raise TypeError(f"logoff got {type(params).__name__}")
    try:
        user = pwd.getpwnam(params.user)
    except KeyError:
        return Outcome(status="failed", reason=f"no user {params.user!r} on this PC")
    if user.pw_uid == 0:
        return Outcome(status="failed", reason="refusing to log off root")
    if user.pw_uid == os.geteuid():
        return Outcome(status="failed", reason="refusing to log off the agent's own user")
    grace = ctx.hooks.get("logoff_grace_seconds")
    seconds = float(grace()) if grace is not None else LOGOFF_GRACE_SECONDS  # type: ignore[arg-type]
    return await asyncio.to_thread(_logoff, user, seconds)
