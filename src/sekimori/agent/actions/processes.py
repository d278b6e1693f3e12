"""``kill_process``: signal one process — only if it still is the one the operator saw.

The process is pinned with a pidfd first (``pidfd_open``), then its name and start
time are compared with the signed ones, then the signal goes through that pidfd: a
PID reused between the check and the signal cannot be hit. Never pid 1, never the
agent itself, never a kernel thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys

from sekimori.agent.actions.base import ActionContext, Outcome
from sekimori.agent.platform.linux import procs
from sekimori.protocol.actions import ActionParams, KillProcessParams

__all__ = ["START_TIME_TOLERANCE_US", "kill_process"]

# The collectors' and this module's idea of the boot time may differ a little; a
# reused pid with the same name starting within this window is not a real risk.
START_TIME_TOLERANCE_US = 1_000_000
_WAIT_EXIT_SECONDS = 5.0


def _names(pid: int) -> set[str]:
    """The names a process is known by: kernel comm, executable and argv[0] base names."""
    names: set[str] = set()
    stat = procs.read_stat(pid)
    if stat is not None:
        names.add(stat.name)
    with contextlib.suppress(OSError):
        names.add(os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)"))
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv0 = fh.read(4096).split(b"\0", 1)[0]
        if argv0:
            names.add(os.path.basename(argv0.decode(errors="replace")))
    return names


def _matches(name: str, names: set[str]) -> bool:
    # comm is cut to 15 bytes by the kernel.
    return name in names or name[:15] in names


def _kill(params: KillProcessParams) -> Outcome:
    if params.pid in {1, os.getpid()}:
        return Outcome(status="failed", reason=f"refusing to kill pid {params.pid}")
    try:
        pidfd = os.pidfd_open(params.pid)
    except ProcessLookupError:
        return Outcome(status="failed", reason=f"no process {params.pid}")
    except OSError as exc:
        return Outcome(status="failed", reason=f"cannot open process {params.pid}: {exc}")
    try:
        stat = procs.read_stat(params.pid)
        if stat is None:
            return Outcome(status="failed", reason=f"no process {params.pid}")
        if stat.kernel_thread:
            return Outcome(status="failed", reason=f"{params.pid} is a kernel thread")
        names = _names(params.pid)
        if not _matches(params.name, names):
            return Outcome(
                status="failed",
                reason=f"process {params.pid} is {stat.name!r}, not {params.name!r}: not killed",
            )
        if params.start_time_us:
            started = procs.ticks_to_us(stat.start_ticks, procs.boot_wall_us())
            if abs(started - params.start_time_us) > START_TIME_TOLERANCE_US:
                return Outcome(
                    status="failed",
                    reason=f"process {params.pid} started at another time (pid reused): not killed",
                )
        sig = signal.SIGKILL if params.signal == "KILL" else signal.SIGTERM
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            return Outcome(status="done", output=f"process {params.pid} had already exited")
        except PermissionError as exc:
            return Outcome(status="failed", reason=f"not permitted: {exc}")
        # A pidfd becomes readable when the process exits.
        ready, _, _ = select.select([pidfd], [], [], _WAIT_EXIT_SECONDS)
        state = "exited" if ready else f"still running {_WAIT_EXIT_SECONDS:.0f} s later"
        return Outcome(
            status="done", output=f"sent SIG{params.signal} to {params.pid} ({stat.name}): {state}"
        )
    finally:
        os.close(pidfd)


async def kill_process(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, KillProcessParams):
        raise TypeError(f"kill_process got {type(params).__name__}")
    if not sys.platform.startswith("linux"):
        return Outcome(status="failed", reason="not supported on this platform")
    return await asyncio.to_thread(_kill, params)
