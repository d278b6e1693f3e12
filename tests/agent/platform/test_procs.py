"""The /proc readers, the executable hasher and the process-events connector, against
real processes of this machine (nothing is mocked).

The connector needs the initial user and pid namespaces; where the kernel does not
acknowledge the subscription (a container) its tests are skipped with the reason, and
the collector's polling path (tested in tests/agent/collectors) is what runs there.
The refusal itself is tested for real by subscribing from a new pid namespace
(``unshare``), which is what a container is to the kernel.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sekimori.agent.platform.linux import procs
from sekimori.agent.platform.linux.proc_connector import (
    ConnectorUnavailable,
    ProcConnector,
    ProcEvent,
)

SLEEP = os.path.realpath(shutil.which("sleep") or "/usr/bin/sleep")
SH = os.path.realpath("/bin/sh")


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts, killed and reaped at the end."""
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)


def start(children: list[subprocess.Popen[bytes]], *argv: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(argv)
    children.append(child)
    wait_exec(child.pid, argv[0])
    return child


def wait_exec(pid: int, program: str) -> None:
    """The child exists at once, but exec completes a moment later (and its command
    line is set after its executable): wait until /proc shows both."""
    deadline = time.monotonic() + 10
    while True:
        stat = procs.read_stat(pid)
        info = procs.read_process(pid, stat, 4096) if stat is not None else None
        if info is not None and info.exe == os.path.realpath(program) and info.argv:
            return
        assert time.monotonic() < deadline, f"{pid} did not exec {program}"
        time.sleep(0.005)


def stat_of(pid: int) -> procs.ProcStat:
    stat = procs.read_stat(pid)
    assert stat is not None
    return stat


# ---- /proc readers --------------------------------------------------------------------


def test_scan_lists_this_process_and_a_child(spawn: list[subprocess.Popen[bytes]]) -> None:
    child = start(spawn, SLEEP, "30")
    pids = procs.scan_pids()
    assert os.getpid() in pids
    assert child.pid in pids
    assert all(isinstance(inode, int) and inode > 0 for inode in pids.values())


def test_stat_of_a_child_matches_the_kernel(spawn: list[subprocess.Popen[bytes]]) -> None:
    child = start(spawn, SLEEP, "30")
    stat = stat_of(child.pid)
    assert stat.ppid == os.getpid()
    assert stat.name == "sleep"
    assert not stat.kernel_thread
    # Start time, checked against psutil's independent reading (whole-second btime).
    started = procs.ticks_to_us(stat.start_ticks, procs.boot_wall_us()) / 1e6
    assert abs(started - psutil.Process(child.pid).create_time()) < 1.5
    assert abs(started - time.time()) < 30


def test_stat_parses_a_name_with_parentheses_and_spaces(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    odd = tmp_path / "a) (b c) 1"
    shutil.copy(SLEEP, odd)
    child = start(spawn, str(odd), "30")
    stat = stat_of(child.pid)
    assert stat.name == "a) (b c) 1"
    assert stat.ppid == os.getpid()
    assert stat.start_ticks == stat_of(child.pid).start_ticks


def test_kernel_threads_are_recognised() -> None:
    # pid 2 is kthreadd, the parent of every kernel thread.
    assert stat_of(2).kernel_thread
    assert not stat_of(os.getpid()).kernel_thread


def test_stat_of_a_process_that_ended_is_none(spawn: list[subprocess.Popen[bytes]]) -> None:
    child = subprocess.Popen([SLEEP, "0"])
    child.wait(10)
    assert procs.read_stat(child.pid) is None
    assert procs.read_process(child.pid, procs.ProcStat(0, "x", "S", 0, False), 100) is None


def test_read_process_gives_exe_argv_uid_and_file_key(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    # A shell keeps its arguments as given, empty and non-ASCII ones included.
    child = start(spawn, SH, "-c", "sleep 30; :", "name", "", "ünïcode arg")
    info = procs.read_process(child.pid, stat_of(child.pid), 4096)
    assert info is not None
    assert info.exe == SH
    assert not info.exe_deleted
    assert info.argv == [SH, "-c", "sleep 30; :", "name", "", "ünïcode arg"]
    assert not info.argv_truncated
    assert info.uid == os.getuid()
    st = os.stat(SH)
    assert info.exe_key == procs.FileKey(
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
    )


def test_long_command_lines_are_cut_at_the_limit(spawn: list[subprocess.Popen[bytes]]) -> None:
    child = start(spawn, SH, "-c", "sleep 30; :", "x" * 500, "y" * 500)
    info = procs.read_process(child.pid, stat_of(child.pid), 100)
    assert info is not None
    assert info.argv_truncated
    assert len("\0".join(info.argv).encode()) <= 100
    assert info.argv[:3] == [SH, "-c", "sleep 30; :"]
    assert info.argv[3].startswith("xxx")


def test_real_uid_of_a_process_run_as_another_user(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    if os.geteuid() != 0:
        pytest.skip("starting a process as another user needs root")
    nobody = pwd.getpwnam("nobody")
    child = subprocess.Popen([SLEEP, "30"], user=nobody.pw_uid)
    spawn.append(child)
    wait_exec(child.pid, SLEEP)
    info = procs.read_process(child.pid, stat_of(child.pid), 100)
    assert info is not None
    assert info.uid == nobody.pw_uid
    assert procs.user_name(info.uid) == "nobody"


def test_user_names() -> None:
    assert procs.user_name(0) == "root"
    unused = next(uid for uid in range(4_000_000, 4_001_000) if not _has_user(uid))
    assert procs.user_name(unused) == str(unused)


def _has_user(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_deleted_executable_is_flagged_and_still_hashed(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    copy = tmp_path / "vanishing"
    shutil.copy(SLEEP, copy)
    expected = sha256_of(copy)
    child = start(spawn, str(copy), "30")
    copy.unlink()
    info = procs.read_process(child.pid, stat_of(child.pid), 4096)
    assert info is not None
    assert info.exe == str(copy)
    assert info.exe_deleted
    # The file is gone from the directory, but /proc/<pid>/exe still opens it.
    result = procs.ExeHasher(1 << 30).digest(child.pid, info.exe, info.exe_key)
    assert result == procs.HashResult("ok", expected)


def test_boot_id_and_boot_time() -> None:
    assert re.fullmatch(r"[0-9a-f-]{36}", procs.boot_id())
    assert procs.boot_id() == procs.boot_id()
    boot = procs.boot_wall_us() / 1e6
    assert abs(boot - psutil.boot_time()) < 2


# ---- hashing --------------------------------------------------------------------------


def _info(pid: int) -> procs.ProcessInfo:
    info = procs.read_process(pid, stat_of(pid), 4096)
    assert info is not None
    return info


def test_hash_is_correct_and_cached_by_file_version(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    binary = tmp_path / "mysleep"
    shutil.copy(SLEEP, binary)
    hasher = procs.ExeHasher(1 << 30)
    hashed: list[str] = []
    hasher.on_hash = lambda path, key: hashed.append(path)

    first = _info(start(spawn, str(binary), "30").pid)
    second = _info(start(spawn, str(binary), "31").pid)
    assert hasher.digest(first.pid, first.exe, first.exe_key) == procs.HashResult(
        "ok", sha256_of(binary)
    )
    assert hasher.digest(second.pid, second.exe, second.exe_key).sha256 == sha256_of(binary)
    assert hashed == [str(binary)]  # the second process hit the cache
    assert hasher.hashed_files == 1

    # A new version of the file at the same path (different content, so different
    # size/mtime/ctime) is a new key: hashed again, with the new digest.
    binary.unlink()
    shutil.copy(SLEEP, binary)
    with binary.open("ab") as f:
        f.write(b"\0appended")
    third = _info(start(spawn, str(binary), "32").pid)
    assert third.exe_key != first.exe_key
    assert hasher.digest(third.pid, third.exe, third.exe_key).sha256 == sha256_of(binary)
    assert sha256_of(binary) != sha256_of(SLEEP)
    assert hashed == [str(binary), str(binary)]


def test_hash_cache_is_bounded(tmp_path: Path, spawn: list[subprocess.Popen[bytes]]) -> None:
    hasher = procs.ExeHasher(1 << 30, max_entries=2)
    infos = []
    for n in range(3):
        path = tmp_path / f"s{n}"
        shutil.copy(SLEEP, path)
        infos.append(_info(start(spawn, str(path), "30").pid))
    for info in infos:
        hasher.digest(info.pid, info.exe, info.exe_key)
    assert hasher.hashed_files == 3
    # The oldest entry was evicted, the newest is still cached.
    hasher.digest(infos[2].pid, infos[2].exe, infos[2].exe_key)
    assert hasher.hashed_files == 3
    hasher.digest(infos[0].pid, infos[0].exe, infos[0].exe_key)
    assert hasher.hashed_files == 4


def test_large_files_are_not_hashed_and_zero_disables(
    spawn: list[subprocess.Popen[bytes]],
) -> None:
    info = _info(start(spawn, SLEEP, "30").pid)
    assert info.exe_key is not None
    small = procs.ExeHasher(info.exe_key.size - 1)
    assert small.digest(info.pid, info.exe, info.exe_key) == procs.HashResult("too_large")
    assert procs.ExeHasher(0).digest(info.pid, info.exe, info.exe_key).status == "disabled"
    assert small.hashed_files == 0


def test_unreadable_when_the_file_changed_or_is_unknown(
    tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    binary = tmp_path / "changing"
    shutil.copy(SLEEP, binary)
    info = _info(start(spawn, str(binary), "30").pid)
    assert info.exe_key is not None
    hasher = procs.ExeHasher(1 << 30)
    assert hasher.digest(info.pid, info.exe, None).status == "unreadable"
    # The key read earlier no longer matches the file (its ctime moved): refuse to
    # hash what may be another version, rather than cache a wrong digest.
    os.utime(binary, ns=(0, 0))
    assert hasher.digest(info.pid, info.exe, info.exe_key).status == "unreadable"
    assert hasher.hashed_files == 0


# ---- the process-events connector ----------------------------------------------------


@pytest.fixture
def connector() -> Iterator[ProcConnector]:
    try:
        conn = ProcConnector()
    except ConnectorUnavailable as exc:
        pytest.skip(f"process-events connector not permitted here: {exc}")
    with conn:
        yield conn


def collect(conn: ProcConnector, pid: int, until: str, timeout: float = 10) -> list[ProcEvent]:
    got: list[ProcEvent] = []
    deadline = time.monotonic() + timeout
    while not any(e.kind == until for e in got):
        assert time.monotonic() < deadline, f"no {until} event for {pid}: {got}"
        events, overrun = conn.read(0.2)
        assert not overrun
        got += [e for e in events if e.pid == pid]
    return got


def test_connector_reports_exec_and_exit(connector: ProcConnector) -> None:
    before = time.time() * 1e6
    child = subprocess.Popen([SLEEP, "0.3"])
    child.wait(10)
    events = collect(connector, child.pid, "exit")
    after = time.time() * 1e6
    assert [e.kind for e in events] == ["exec", "exit"]
    exec_, exit_ = events
    assert before <= exec_.time_us <= exit_.time_us <= after
    # The kernel's timestamps measure the real lifetime (sleep 0.3).
    assert 250_000 <= exit_.time_us - exec_.time_us < 5_000_000


def test_connector_ignores_thread_exits(connector: ProcConnector) -> None:
    script = "import threading; t = threading.Thread(target=lambda: None); t.start(); t.join()"
    child = subprocess.Popen([sys.executable, "-c", script])
    child.wait(10)
    events = collect(connector, child.pid, "exit")
    # One exec, one exit: the thread's own exit (another task id) is not reported.
    assert [e.kind for e in events] == ["exec", "exit"]


def test_connector_reports_forks_of_processes_not_threads_when_asked() -> None:
    try:
        conn = ProcConnector(forks=True)
    except ConnectorUnavailable as exc:
        pytest.skip(f"process-events connector not permitted here: {exc}")
    script = (
        "import os, threading\n"
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
        "pid = os.fork()\n"
        "if pid == 0: os._exit(0)\n"
        "os.waitpid(pid, 0); print(pid)"
    )
    with conn:
        with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as child:
            grandchild = int(child.communicate(timeout=30)[0])
        got: list[ProcEvent] = []
        deadline = time.monotonic() + 10
        while sum(e.kind == "exit" and e.pid in (child.pid, grandchild) for e in got) < 2:
            assert time.monotonic() < deadline, f"no exits of {child.pid}, {grandchild}: {got}"
            got += conn.read(0.2)[0]
    mine = [e for e in got if e.pid == child.pid]
    theirs = [e for e in got if e.pid == grandchild]
    assert [e.kind for e in mine] == ["fork", "exec", "exit"]
    # The grandchild never execs; the thread's fork (another task id) is not reported.
    assert [e.kind for e in theirs] == ["fork", "exit"]


def test_connector_is_refused_inside_a_pid_namespace() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("creating a pid namespace needs root and unshare")
    script = (
        "from sekimori.agent.platform.linux.proc_connector import *\n"
        "try:\n    ProcConnector(ack_timeout=0.5).close(); print('subscribed')\n"
        "except ConnectorUnavailable as exc:\n    print(exc)\n"
    )
    with subprocess.Popen(
        ["unshare", "--pid", "--fork", sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        # Meanwhile, others subscribe here: the kernel's answers to them reach every
        # socket of the group, the namespaced one's too, and must not pass for its own.
        while child.poll() is None:
            try:
                ProcConnector(ack_timeout=0.3).close()
            except ConnectorUnavailable:
                break
            time.sleep(0.02)
        out, _ = child.communicate(timeout=30)
    assert "did not acknowledge the process-events subscription" in out
