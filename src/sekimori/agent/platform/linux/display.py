"""Which graphical session to watch: an X display and its cookie, or Wayland.

The agent usually runs as a root service with no ``DISPLAY`` of its own, while the
person works in an X session owned by their own account. The display is chosen, in
this order:

1. an explicit display from the agent's settings (with an optional cookie file);
2. a Wayland session in the agent's own environment (``WAYLAND_DISPLAY`` or
   ``XDG_SESSION_TYPE=wayland``) is refused: XWayland's ``DISPLAY`` only sees X
   clients, so the "active window" would silently be wrong whenever a native Wayland
   application has focus;
3. ``DISPLAY`` (and ``XAUTHORITY``) from the agent's environment;
4. discovery: the X sockets in ``/tmp/.X11-unix`` matched with the environment of the
   processes running in those sessions (``DISPLAY``, ``XAUTHORITY``, the user), the
   way ``x11vnc -auth guess`` finds a session's cookie. Reading other users' process
   environments needs root; without it only the agent user's own sessions are found.

One display is watched: multi-seat PCs (several local X servers at once) are rare on
the office PCs this is built for.
"""

from __future__ import annotations

import os
import pwd
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "DisplayTarget",
    "NoDisplay",
    "RemoteDisplay",
    "WaylandSession",
    "find_display",
    "session_displays",
    "wayland_reason",
    "x_display_numbers",
]

X11_SOCKET_DIR = Path("/tmp/.X11-unix")  # noqa: S108 - the X server's fixed socket folder
# An environ larger than this is not a desktop session worth parsing (and bounds memory).
_MAX_ENVIRON = 256 * 1024


class NoDisplay(Exception):
    """No X display is configured, in the environment, or running on this PC."""


class WaylandSession(Exception):
    """The session is Wayland: window titles cannot be observed."""


class RemoteDisplay(Exception):
    """The configured display is on another host: collectors do not use the network."""


@dataclass(frozen=True, slots=True)
class DisplayTarget:
    display: str
    """An X display name such as ``":0"``."""
    xauthority: str | None
    """The cookie file to authenticate with; None: ``$XAUTHORITY`` or ``~/.Xauthority``."""
    uid: int | None
    """The session's user when known (discovered sessions), else None."""
    source: Literal["settings", "environment", "discovered"]


def wayland_reason(env: Mapping[str, str]) -> str | None:
    """Why ``env`` belongs to a Wayland session, or None when it does not."""
    if env.get("WAYLAND_DISPLAY"):
        return f"WAYLAND_DISPLAY={env['WAYLAND_DISPLAY']}"
    if env.get("XDG_SESSION_TYPE", "").lower() == "wayland":
        return "XDG_SESSION_TYPE=wayland"
    return None


def x_display_numbers(socket_dir: Path = X11_SOCKET_DIR) -> list[int]:
    """Display numbers with a listening X socket (``X0`` → 0), ascending."""
    try:
        names = os.listdir(socket_dir)
    except OSError:
        return []
    return sorted(int(n[1:]) for n in names if n.startswith("X") and n[1:].isdigit())


def _display_number(display: str) -> int | None:
    """``":1"``, ``":1.0"``, ``"unix:1"`` → 1; a remote or malformed name → None."""
    host, sep, rest = display.rpartition(":")
    if not sep or host not in ("", "unix", "localhost"):
        return None
    number = rest.split(".", 1)[0]
    return int(number) if number.isdigit() else None


def _read_environ(path: Path) -> dict[str, str] | None:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_ENVIRON)
    except OSError:  # gone, or another user's process while not root
        return None
    env: dict[str, str] = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key in (b"DISPLAY", b"XAUTHORITY", b"WAYLAND_DISPLAY", b"XDG_SESSION_TYPE"):
            env[key.decode()] = value.decode(errors="surrogateescape")
    return env


def _default_cookie(uid: int) -> str | None:
    try:
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None
    path = Path(home) / ".Xauthority"
    return str(path) if path.is_file() else None


def session_displays(
    socket_dir: Path = X11_SOCKET_DIR, proc: Path = Path("/proc")
) -> tuple[list[DisplayTarget], list[str]]:
    """Discover running X sessions from processes' environments.

    Returns ``(x_sessions, wayland_reasons)``: the X displays with a live socket that
    some non-Wayland process uses, best first (more processes of a non-root user
    first), and why any Wayland sessions were seen. Reads ``/proc/*/environ`` once;
    meant for start-up, not for every tick.
    """
    live = set(x_display_numbers(socket_dir))
    if not proc.is_dir():
        return [], []
    votes: Counter[tuple[int, str | None, int]] = Counter()
    wayland: list[str] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        env = _read_environ(entry / "environ")
        if not env:
            continue
        try:
            uid = entry.stat().st_uid
        except OSError:
            continue
        reason = wayland_reason(env)
        if reason is not None:
            if reason not in wayland:
                wayland.append(reason)
            continue
        number = _display_number(env.get("DISPLAY", ""))
        if number is None or number not in live:
            continue
        votes[(number, env.get("XAUTHORITY") or _default_cookie(uid), uid)] += 1
    ranked = sorted(votes.items(), key=lambda item: (item[0][2] == 0, -item[1], item[0][0]))
    sessions: list[DisplayTarget] = []
    seen: set[int] = set()
    for (number, cookie, uid), _count in ranked:
        if number not in seen:
            seen.add(number)
            sessions.append(DisplayTarget(f":{number}", cookie, uid, "discovered"))
    return sessions, wayland


def _require_local(display: str, source: str) -> None:
    # "host:0" makes python-xlib dial TCP to that host; "localhost:N" (SSH X11
    # forwarding) stays on the loopback interface.
    if _display_number(display) is None:
        raise RemoteDisplay(
            f"{source} {display!r} is not a local X display (:N, unix:N or localhost:N);"
            " collectors do not connect to other hosts"
        )


def find_display(
    *,
    display: str = "",
    xauthority: str = "",
    env: Mapping[str, str],
    socket_dir: Path = X11_SOCKET_DIR,
    proc: Path = Path("/proc"),
) -> DisplayTarget:
    """Choose the X display to watch (see the module docstring for the order).

    ``display``/``xauthority`` come from settings ("" = not set). Raises
    ``WaylandSession`` for a Wayland session, ``NoDisplay`` when there is no X
    display at all, and ``RemoteDisplay`` for a display on another host.
    """
    cookie = xauthority or None
    if display:
        _require_local(display, "the window collector's display setting")
        return DisplayTarget(display, cookie or env.get("XAUTHORITY") or None, None, "settings")
    reason = wayland_reason(env)
    if reason is not None:
        raise WaylandSession(
            f"the session is Wayland ({reason}): window titles and the active "
            "application are unavailable on Wayland"
        )
    if env.get("DISPLAY"):
        _require_local(env["DISPLAY"], "DISPLAY")
        return DisplayTarget(
            env["DISPLAY"], cookie or env.get("XAUTHORITY") or None, None, "environment"
        )
    sessions, wayland = session_displays(socket_dir, proc)
    if sessions:
        best = sessions[0]
        return DisplayTarget(best.display, cookie or best.xauthority, best.uid, best.source)
    if wayland:
        raise WaylandSession(
            f"the logged-on session is Wayland ({wayland[0]}): window titles and the "
            "active application are unavailable on Wayland"
        )
    numbers = x_display_numbers(socket_dir)
    if numbers:
        # A live X server nobody's environment points at (e.g. a display manager's
        # greeter): watch it; the cookie, if needed, must come from settings.
        return DisplayTarget(f":{numbers[0]}", cookie, None, "discovered")
    raise NoDisplay(
        f"no X display: DISPLAY is not set, no display is configured, and no X server "
        f"socket is in {socket_dir}"
    )
