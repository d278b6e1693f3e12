"""Events of the process collector.

A process is identified by (pid, start_time_us): pids are reused, start times are not.

* ``process.running`` — the snapshot taken when the collector first runs on a PC (or
  after a reboot): one event per process that was already running, so the server knows
  what runs without having seen it start.
* ``process.started`` — a program image began in a process: a new process was seen, or
  a known process exec'd another program (then pid and start_time_us repeat, with the
  new exe and argv). A process forked without exec carries its parent's image.
* ``process.stopped`` — the process ended. ``exact_time`` is true when the kernel told
  the agent (process-events connector); otherwise the event time is when the agent
  noticed, at most one polling interval late (or at the agent's restart).

Event times: ``process.started`` is stamped when the image began (the kernel's exec
time, or the process's start time when found by polling), ``process.stopped`` when it
ended (or was noticed ended), ``process.running`` when the snapshot was taken.
"""

from __future__ import annotations

from typing import Final, Literal

from sekimori.protocol.events._base import Payload

__all__ = ["KINDS", "HashStatus", "ProcessRunning", "ProcessStarted", "ProcessStopped"]

# ok: sha256 is the executable's digest. too_large: larger than the agent's hash limit.
# unreadable: the file could not be opened (gone, or not permitted) or changed while
# being read. disabled: hashing is switched off (a hash limit of 0).
HashStatus = Literal["ok", "too_large", "unreadable", "disabled"]


class ProcessStarted(Payload, kw_only=True):
    pid: int
    ppid: int
    name: str
    """The kernel's short name (comm), known even when exe is not."""
    exe: str
    """Absolute path of the executable; empty when the kernel refuses to say."""
    exe_deleted: bool = False
    """The executable was deleted (or replaced) after the process started it."""
    argv: list[str]
    argv_truncated: bool = False
    """The command line was longer than the agent's limit and was cut."""
    user: str
    """The OS user name of the real uid (the uid as text when it has no name)."""
    uid: int
    start_time_us: int
    sha256: str = ""
    """Lower-case hex digest of the executable, empty unless hash_status is "ok"."""
    hash_status: HashStatus


class ProcessRunning(ProcessStarted):
    """A process that was already running when the collector first looked."""


class ProcessStopped(Payload):
    pid: int
    ppid: int
    name: str
    exe: str
    user: str
    uid: int
    start_time_us: int
    duration_us: int
    exact_time: bool


KINDS: Final[dict[str, type[Payload]]] = {
    "process.running": ProcessRunning,
    "process.started": ProcessStarted,
    "process.stopped": ProcessStopped,
}
