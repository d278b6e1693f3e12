"""Running a helper program for a handler (a script, dpkg): bounded in time and output.

The child gets its own session, so its process group can be killed as a whole: on
timeout, and also when the child itself exits — whatever it left running in its group
(``sleep 1000 &``) is killed with it, so an action never leaves work behind and never
hangs on a pipe held open by a grandchild. A process that calls ``setsid()`` escapes
the group; that is the limit of this mechanism (no cgroup here).

stdin is ``/dev/null``; stdout and stderr are merged into one pipe, of which only the
last bytes are kept (``keep_bytes``) however much the child writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sekimori.agent.actions.base import cap_output
from sekimori.protocol.actions import MAX_OUTPUT_CHARS

__all__ = ["MINIMAL_PATH", "ChildResult", "run_child"]

MINIMAL_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Bytes of output kept while reading (the end); enough for MAX_OUTPUT_CHARS characters
# of UTF-8 text.
_KEEP_BYTES: Final = 4 * MAX_OUTPUT_CHARS
# After the child exits and its group is killed, how long the rest of the pipe may take.
_DRAIN_SECONDS: Final = 2.0


@dataclass(frozen=True)
class ChildResult:
    # The exit status; negative: killed by that signal (as subprocess reports it).
    exit_code: int
    # Merged stdout and stderr, decoded (invalid UTF-8 replaced) and capped.
    output: str
    timed_out: bool


async def _read_tail(fd: int, tail: bytearray, keep_bytes: int) -> None:
    """Read non-blocking ``fd`` to its end, keeping its last ``keep_bytes``."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            while chunk := os.read(fd, 65536):
                tail.extend(chunk)
                if len(tail) > keep_bytes:
                    del tail[: len(tail) - keep_bytes]
        except BlockingIOError:
            return
        loop.remove_reader(fd)
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await ended
    finally:
        loop.remove_reader(fd)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run_child(
    argv: Sequence[str],
    *,
    timeout_seconds: float,
    env: Mapping[str, str],
    cwd: str = "/",
    pass_fds: Sequence[int] = (),
    keep_bytes: int = _KEEP_BYTES,
) -> ChildResult:
    """Run ``argv`` to its end or until ``timeout_seconds``, whichever comes first.

    Raises ``OSError`` when the program cannot be started (not found, not executable).
    """
    # Our own pipe rather than asyncio's: asyncio's wait() also waits for its pipes to
    # close, which a grandchild holding stdout would delay until the timeout.
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=asyncio.subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
                pass_fds=tuple(pass_fds),
                close_fds=True,
            )
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        # The child leads a new session: its pid is its process group's id.
        pgid = proc.pid
        tail = bytearray()
        reader = asyncio.create_task(_read_tail(read_fd, tail, keep_bytes))
        timed_out = False
        try:
            try:
                await asyncio.wait_for(proc.wait(), timeout_seconds)
            except TimeoutError:
                timed_out = True
        finally:
            # Whether it ended or not, nothing of its group outlives the action. (Its
            # pid cannot be reused as a group id while a member of the group lives.)
            _kill_group(pgid)
            exit_code = await proc.wait()
            try:
                await asyncio.wait_for(asyncio.shield(reader), _DRAIN_SECONDS)
            except TimeoutError:
                # A process that left the group still holds the pipe: stop reading.
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
    finally:
        os.close(read_fd)
    return ChildResult(
        exit_code=exit_code,
        output=cap_output(tail.decode("utf-8", errors="replace")),
        timed_out=timed_out,
    )
