"""Events of the session collector: logon/logoff, boot/shutdown, suspend/resume.

Logon and logoff come from utmp: ``tty`` is the terminal line ("tty2", "pts/0",
":0"), ``host`` what utmp records as the origin (an address or name for SSH, the X
display for a graphical logon), ``remote`` whether the logon came over the network.

Screen lock/unlock is not reported: on Linux it is known only to logind and the
desktop's screen saver over D-Bus, which this collector does not read yet.
"""

from __future__ import annotations

from typing import Final, Literal

from sekimori.protocol.events._base import Payload

__all__ = [
    "KINDS",
    "Boot",
    "Logoff",
    "Logon",
    "Resume",
    "Shutdown",
    "Suspend",
]


class Logon(Payload):
    """A user logged on (event time: the logon). ``present_at_start``: the session
    was already open when the agent first looked on this PC."""

    user: str
    tty: str
    host: str = ""
    address: str = ""
    remote: bool = False
    pid: int = 0
    login_time_us: int = 0
    present_at_start: bool = False


class Logoff(Payload):
    """A session ended (event time: the logoff). ``reason`` "shutdown": the PC went
    off with the session open; the time is then when the agent last saw it running."""

    user: str
    tty: str
    host: str = ""
    address: str = ""
    remote: bool = False
    pid: int = 0
    login_time_us: int = 0
    reason: Literal["logout", "shutdown"] = "logout"


class Boot(Payload):
    """The PC started (event time: the boot). ``previous_last_seen_us`` is when the
    agent last saw the previous boot running: the PC was off from then until now."""

    boot_id: str
    boot_time_us: int
    previous_boot_id: str = ""
    previous_last_seen_us: int | None = None


class Shutdown(Payload):
    """The PC went off or restarted, noticed at the next boot (event time: when the
    agent last saw it running, so the shutdown happened at or shortly after).
    ``agent_stopped``: the agent was stopped cleanly at that time, as in an orderly
    shutdown; otherwise the power was cut, or it crashed, within the heartbeat."""

    boot_id: str
    last_seen_us: int
    agent_stopped: bool


class Suspend(Payload):
    """The PC went to sleep (event time: estimated from the resume and the length)."""

    suspended_us: int


class Resume(Payload):
    """The PC woke up after ``suspended_us`` microseconds asleep (event time: when the
    agent noticed, within one interval of the wake-up)."""

    suspended_us: int


KINDS: Final[dict[str, type[Payload]]] = {
    "session.logon": Logon,
    "session.logoff": Logoff,
    "session.boot": Boot,
    "session.shutdown": Shutdown,
    "session.suspend": Suspend,
    "session.resume": Resume,
}
