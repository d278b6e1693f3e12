"""``restart`` / ``shutdown``: schedule it with the system's ``shutdown`` command.

``shutdown -r +N "message"`` (or ``-h``): the delay is rounded up to whole minutes
(``shutdown`` counts in minutes; 0 is ``now``), and logged-in users see the message
through the system's own wall notice. The program is the agent setting
``actions_shutdown_command`` (default ``shutdown``), so tests run a recording script
instead of turning the test machine off.
"""

from __future__ import annotations

import asyncio
import contextlib

from sekimori.agent.actions.base import ActionContext, Outcome, cap_output
from sekimori.protocol.actions import ActionParams, RestartParams, ShutdownParams

__all__ = ["restart", "schedule_argv", "shutdown"]

_TIMEOUT_SECONDS = 30.0


def schedule_argv(program: tuple[str, ...], params: RestartParams | ShutdownParams) -> list[str]:
    flag = "-r" if isinstance(params, RestartParams) else "-h"
    minutes = -(-params.delay_seconds // 60)
    when = "now" if minutes == 0 else f"+{minutes}"
    argv = [*program, flag, when]
    if params.message:
        argv.append(params.message)
    return argv


async def _schedule(params: RestartParams | ShutdownParams, ctx: ActionContext) -> Outcome:
    argv = schedule_argv(ctx.shutdown_command, params)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        return Outcome(status="failed", reason=f"cannot run {argv[0]}: {exc.strerror}")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), _TIMEOUT_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return Outcome(status="failed", reason=f"{argv[0]} did not finish in time")
    output = cap_output(out.decode(errors="replace"))
    if proc.returncode != 0:
        return Outcome(
            status="failed",
            reason=f"{argv[0]} exited with {proc.returncode}",
            exit_code=proc.returncode,
            output=output,
        )
    return Outcome(status="done", exit_code=0, output=output or " ".join(argv[1:3]))


async def restart(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, RestartParams):
        raise TypeError(f"restart got {type(params).__name__}")
    return await _schedule(params, ctx)


async def shutdown(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, ShutdownParams):
        raise TypeError(f"shutdown got {type(params).__name__}")
    return await _schedule(params, ctx)
