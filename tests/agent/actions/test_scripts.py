"""run_script with real interpreters and processes: output, exit code, environment,
timeouts that kill the whole process group, another user, tampered bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sekimori.agent.actions.base import Outcome
from sekimori.agent.actions.files import WORK_DIR
from sekimori.agent.actions.scripts import run_script
from sekimori.protocol.actions import MAX_OUTPUT_CHARS, RunScriptParams
from tests.agent.actions.handler_context import context

THROWAWAY_USER = "sekimori-a2-test"


def _run(
    state: Path,
    script: str,
    *,
    attachment: bytes | None = None,
    **kw: object,
) -> Outcome:
    data = script.encode()
    params = RunScriptParams(
        name="test",
        sha256=hashlib.sha256(data).hexdigest(),
        **kw,  # type: ignore[arg-type]
    )
    ctx = context(params, state, attachment=data if attachment is None else attachment)
    return asyncio.run(run_script(params, ctx))


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _no_leftovers(state: Path) -> None:
    assert not list((state / WORK_DIR).iterdir())


def test_output_exit_code_arguments_and_environment(tmp_path: Path) -> None:
    script = 'echo "out $1 $2"; echo err >&2; pwd; env | sort; exit 3\n'
    outcome = _run(tmp_path, script, args=["a b", "c"])
    assert outcome.status == "failed"
    assert outcome.reason == "exit code 3"
    assert outcome.exit_code == 3
    lines = outcome.output.splitlines()
    assert lines[:3] == ["out a b c", "err", "/"]
    names = {line.split("=", 1)[0] for line in lines[3:]}
    # Only what the handler sets (sh adds PWD itself): nothing of the agent's env.
    assert names <= {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "SEKIMORI_ACTION", "PWD"}
    assert "SEKIMORI_ACTION" in names
    _no_leftovers(tmp_path)


def test_bash_and_python_with_stdin_closed(tmp_path: Path) -> None:
    ok = _run(
        tmp_path, 'read -r x; echo "read=$?"; echo ${BASH_VERSION:+bash}\n', interpreter="bash"
    )
    assert ok.status == "done", ok.reason
    assert ok.output.split() == ["read=1", "bash"]
    py = _run(
        tmp_path,
        "import os, stat, sys\n"
        "print(sys.stdin.read() == '', oct(stat.S_IMODE(os.stat(sys.argv[0]).st_mode)))\n",
        interpreter="python3",
    )
    assert py.status == "done", py.reason
    # The script file the interpreter read is private (0700).
    assert py.output.split() == ["True", "0o700"]
    _no_leftovers(tmp_path)


def test_output_is_capped_to_its_end(tmp_path: Path) -> None:
    outcome = _run(
        tmp_path,
        "import sys\nfor i in range(50000): print('line', i)\n"
        "sys.stdout.flush()\nprint('the end', file=sys.stderr)\n",
        interpreter="python3",
    )
    assert outcome.status == "done"
    assert len(outcome.output) <= MAX_OUTPUT_CHARS
    assert outcome.output.startswith("…[truncated]…")
    assert outcome.output.rstrip().endswith("line 49999\nthe end")


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    outcome = _run(tmp_path, f"sleep 1000 & echo $! > {pid_file}; sleep 1000\n", timeout_seconds=1)
    assert time.monotonic() - started < 5
    assert outcome.status == "failed"
    assert outcome.reason.startswith("timed out after 1 s")
    assert _gone(int(pid_file.read_text()))
    _no_leftovers(tmp_path)


def test_a_child_left_behind_is_killed_when_the_script_ends(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    outcome = _run(tmp_path, f"sleep 1000 & echo $! > {pid_file}; echo bye\n")
    # Not held until the timeout by the child keeping the output pipe open.
    assert time.monotonic() - started < 5
    assert outcome.status == "done", outcome.reason
    assert outcome.output == "bye\n"
    assert _gone(int(pid_file.read_text()))


def test_bytes_changed_after_signing_are_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    outcome = _run(tmp_path, "true\n", attachment=f"touch {marker}\n".encode())
    assert outcome.status == "failed"
    assert "do not match" in outcome.reason
    assert not marker.exists()


@pytest.fixture(scope="module")
def throwaway_user() -> Iterator[pwd.struct_passwd]:
    created = False
    try:
        pwd.getpwnam(THROWAWAY_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                THROWAWAY_USER,
            ],
            check=True,
        )
        created = True
    try:
        yield pwd.getpwnam(THROWAWAY_USER)
    finally:
        if created:
            subprocess.run(["userdel", THROWAWAY_USER], check=True)


def test_run_as_another_user(tmp_path: Path, throwaway_user: pwd.struct_passwd) -> None:
    outcome = _run(
        tmp_path,
        'id -u; id -g; echo "$USER"; cat /etc/shadow >/dev/null 2>&1 || echo no-shadow\n',
        run_as=THROWAWAY_USER,
    )
    assert outcome.status == "done", (outcome.reason, outcome.output)
    assert outcome.output.split() == [
        str(throwaway_user.pw_uid),
        str(throwaway_user.pw_gid),
        THROWAWAY_USER,
        "no-shadow",
    ]
    _no_leftovers(tmp_path)


def test_unknown_user_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    outcome = _run(tmp_path, f"touch {marker}\n", run_as="no-such-user-a2")
    assert outcome.status == "failed"
    assert outcome.reason == "unknown user 'no-such-user-a2'"
    assert not marker.exists()


def test_killed_by_a_signal(tmp_path: Path) -> None:
    outcome = _run(tmp_path, "kill -KILL $$\n")
    assert outcome.status == "failed"
    assert outcome.reason == "killed by signal SIGKILL"
    assert outcome.exit_code == -9


def test_the_agent_environment_does_not_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEKIMORI_SECRET_FOR_TEST", "x")
    outcome = _run(tmp_path, 'echo "[${SEKIMORI_SECRET_FOR_TEST-}]"\n')
    assert outcome.output == "[]\n"
    assert os.environ["SEKIMORI_SECRET_FOR_TEST"] == "x"


def test_a_process_that_left_the_group_does_not_hold_the_result(tmp_path: Path) -> None:
    # setsid() escapes the process group (the documented limit): the handler still
    # answers, after a short drain, instead of waiting on the pipe it holds.
    pid_file = tmp_path / "escapee.pid"
    started = time.monotonic()
    try:
        escape = (
            "import os, time; os.setsid(); "
            f"open('{pid_file}.new', 'w').write(str(os.getpid())); "
            f"os.rename('{pid_file}.new', '{pid_file}'); time.sleep(1000)"
        )
        script = (
            f'python3 -c "{escape}" &\nwhile [ ! -e {pid_file} ]; do sleep 0.01; done\necho left\n'
        )
        outcome = _run(tmp_path, script)
        assert time.monotonic() - started > 1.5
        assert time.monotonic() - started < 6
        assert outcome.status == "done", outcome.reason
        assert outcome.output == "left\n"
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
