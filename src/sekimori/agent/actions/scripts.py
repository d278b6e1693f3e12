"""``run_script``: run a library script the operators signed (by its SHA-256).

- The bytes are written to a 0700 file in ``<state_dir>/action-files`` (deleted after
  the run) and handed to the interpreter as ``/dev/fd/N`` of a descriptor opened here:
  the interpreter reads exactly the file written, even when it runs as another user who
  cannot enter the private state directory.
- ``run_as``: an existing local user (refused otherwise), switched to with ``setpriv``
  (real and effective uid/gid, the user's groups; a non-root uid keeps no capability).
  Empty or ``root``: the agent's own user.
- Working directory ``/``, stdin ``/dev/null``, a minimal environment (``PATH``,
  ``HOME``, ``USER``, ``LOGNAME``, ``SHELL``, ``LANG``, ``SEKIMORI_ACTION``), stdout and
  stderr merged and capped (the end is kept).
- ``timeout_seconds``: the whole process group is killed; whatever the script leaves in
  its group when it exits is killed too (``child_process``).
- Exit code 0: ``done``; otherwise ``failed`` with the exit code and the output.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import sys
import tempfile
from typing import Final

from sekimori.agent.actions.base import ActionContext, Outcome
from sekimori.agent.actions.child_process import MINIMAL_PATH, run_child
from sekimori.agent.actions.files import work_dir
from sekimori.protocol.actions import ActionParams, RunScriptParams

__all__ = ["INTERPRETERS", "run_script"]

INTERPRETERS: Final = {"sh": "sh", "bash": "bash", "python3": "python3"}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


async def run_script(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, RunScriptParams):
        raise TypeError(f"run_script got {type(params).__name__}")
    if not sys.platform.startswith("linux"):
        return Outcome(status="failed", reason="not supported on this platform")
    # The executor checked it; checked again here because running other bytes than
    # the signed ones is the one thing this handler must never do.
    if hashlib.sha256(ctx.attachment).hexdigest() != params.sha256:
        return Outcome(status="failed", reason="the script's bytes do not match its signed SHA-256")
    interpreter = shutil.which(INTERPRETERS[params.interpreter], path=MINIMAL_PATH)
    if interpreter is None:
        return Outcome(status="failed", reason=f"{params.interpreter} is not installed")
    user = params.run_as or "root"
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return Outcome(status="failed", reason=f"unknown user {user!r}")
    switch: list[str] = []
    if account.pw_uid != os.geteuid():
        if os.geteuid() != 0:
            return Outcome(status="failed", reason=f"the agent cannot run scripts as {user!r}")
        setpriv = shutil.which("setpriv", path=MINIMAL_PATH)
        if setpriv is None:
            return Outcome(status="failed", reason="setpriv is not installed")
        switch = [
            setpriv,
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--init-groups",
            "--",
        ]
    env = {
        "PATH": MINIMAL_PATH,
        "HOME": account.pw_dir or "/",
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
        "SEKIMORI_ACTION": ctx.body.nonce,
    }
    fd, name = tempfile.mkstemp(prefix="script-", dir=work_dir(ctx.state_dir))
    read_fd = -1
    try:
        os.fchmod(fd, 0o700)
        with os.fdopen(fd, "wb") as out:
            out.write(ctx.attachment)
        read_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW)
        if switch:
            # The interpreter reopens /dev/fd/N as the target user: the inode's owner
            # must be that user (the directory stays private to root).
            os.fchown(read_fd, account.pw_uid, account.pw_gid)
        argv = [*switch, interpreter, f"/dev/fd/{read_fd}", *params.args]
        try:
            result = await run_child(
                argv, timeout_seconds=params.timeout_seconds, env=env, pass_fds=(read_fd,)
            )
        except OSError as exc:
            return Outcome(status="failed", reason=f"cannot start {argv[0]}: {exc.strerror}")
    finally:
        if read_fd >= 0:
            os.close(read_fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    if result.timed_out:
        return Outcome(
            status="failed",
            reason=f"timed out after {params.timeout_seconds} s; its process group was killed",
            exit_code=result.exit_code,
            output=result.output,
        )
    if result.exit_code < 0:
        reason = f"killed by signal {_signal_name(-result.exit_code)}"
        return Outcome(
            status="failed", reason=reason, exit_code=result.exit_code, output=result.output
        )
    if result.exit_code != 0:
        return Outcome(
            status="failed",
            reason=f"exit code {result.exit_code}",
            exit_code=result.exit_code,
            output=result.output,
        )
    return Outcome(status="done", exit_code=0, output=result.output)
