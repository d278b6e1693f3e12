"""The process collector against real processes of this machine (nothing is mocked).

Each test runs the collector's ``run()`` in a thread with a real outbox, starts real
processes (``sleep``, a Python child, copies of ``sleep`` in tmp_path) and reads the
events back from the outbox. Both ways of seeing processes are tested: the kernel's
process-events connector (skipped, with the kernel's reason, where it is not permitted)
and polling /proc alone. Other processes of this machine produce events too; the
tests only look at the pids they started.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sekimori.agent.collectors.base import CollectorError, Sink
from sekimori.agent.collectors.processes import ProcessCollector, ProcessSettings
from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.agent.collectors.supervisor import CollectorConfigError, Supervisor
from sekimori.agent.outbox import Outbox
from sekimori.agent.platform.linux import procs
from sekimori.agent.platform.linux.proc_connector import ConnectorUnavailable, ProcConnector
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import Payload
from sekimori.protocol.events.process import ProcessRunning, ProcessStarted, ProcessStopped

SLEEP = os.path.realpath(shutil.which("sleep") or "/usr/bin/sleep")
SH = os.path.realpath("/bin/sh")
PYTHON = os.path.realpath(sys.executable)
ME = pwd.getpwuid(os.getuid()).pw_name


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Seen(msgspec.Struct):
    kind: str
    os_user: str | None
    time_us: int
    payload: Payload


def events(outbox: Outbox) -> list[Seen]:
    return [
        Seen(e.kind, e.os_user, e.time_us, decode_payload(e.kind, e.payload))
        for e in outbox.peek(0, max_events=1_000_000, max_bytes=1 << 30)
    ]


def of_pid(outbox: Outbox, pid: int, kind: str | None = None) -> list[Seen]:
    return [
        s
        for s in events(outbox)
        if getattr(s.payload, "pid", None) == pid and (kind is None or s.kind == kind)
    ]


def wait_until(what: str, found: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := found()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
    return result


def started(outbox: Outbox, pid: int, exe: str) -> Seen:
    """The process.started event of ``pid`` running ``exe`` (waits for it)."""
    found = wait_until(
        f"process.started of {pid} ({exe})",
        lambda: [
            s
            for s in of_pid(outbox, pid, "process.started")
            if isinstance(s.payload, ProcessStarted) and s.payload.exe == exe
        ],
    )
    seen = found[-1]
    assert isinstance(seen, Seen)
    return seen


def image(seen: Seen) -> ProcessStarted:
    assert isinstance(seen.payload, ProcessStarted)
    return seen.payload


def stopped(outbox: Outbox, pid: int) -> ProcessStopped:
    (seen,) = wait_until(
        f"process.stopped of {pid}", lambda: of_pid(outbox, pid, "process.stopped")
    )
    assert isinstance(seen.payload, ProcessStopped)
    return seen.payload


class Running:
    """The collector's run() in a thread; stop() joins and re-raises its failure."""

    def __init__(self, outbox: Outbox, **settings: Any) -> None:
        conf = msgspec.convert(settings, ProcessSettings)
        self.collector = ProcessCollector(conf, Sink(outbox, "processes"))
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)

    def start(self, outbox: Outbox) -> Running:
        self.thread.start()
        # The snapshot (or resumption) is done once this test process is known.
        wait_until("the first scan", lambda: of_pid(outbox, os.getpid()) or self.error)
        return self

    def _run(self) -> None:
        try:
            self.collector.run(self.stop_event)
        # Any failure is kept and raised again by stop(), in the test's thread.
        except Exception as exc:  # noqa: BLE001
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "collector did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    yield box
    box.close()


def connector_permitted() -> str | None:
    try:
        ProcConnector().close()
    except ConnectorUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(params=["connector", "polling"])
def mode(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for each way of seeing processes (polling ticks fast to keep tests short)."""
    if request.param == "connector":
        reason = connector_permitted()
        if reason is not None:
            pytest.skip(f"process-events connector not permitted here: {reason}")
        return {"use_connector": True, "interval_seconds": 0.2}
    return {"use_connector": False, "interval_seconds": 0.2}


@pytest.fixture
def collector(outbox: Outbox, mode: dict[str, Any]) -> Iterator[Callable[..., Running]]:
    runs: list[Running] = []

    def make(**settings: Any) -> Running:
        run = Running(outbox, **{**mode, **settings})
        runs.append(run)
        return run

    yield make
    for run in runs:
        if run.thread.is_alive():
            run.stop()


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs_: list[subprocess.Popen[bytes]] = []
    yield procs_
    for child in procs_:
        if child.poll() is None:
            child.kill()
        child.wait(10)


def spawn(children: list[subprocess.Popen[bytes]], *argv: str, **kw: Any) -> int:
    child = subprocess.Popen(argv, **kw)
    children.append(child)
    return child.pid


def spawn_exec(children: list[subprocess.Popen[bytes]], *argv: str) -> int:
    """Spawn, and return once the child runs ``argv[0]`` (not the fork of pytest)."""
    pid = spawn(children, *argv)

    def exec_done() -> bool:
        stat = procs.read_stat(pid)
        info = procs.read_process(pid, stat, 4096) if stat is not None else None
        return info is not None and info.exe == os.path.realpath(argv[0]) and bool(info.argv)

    wait_until(f"{pid} to exec {argv[0]}", exec_done)
    return pid


# ---- start and stop -------------------------------------------------------------------


def test_a_python_child_and_its_sleep_start_and_stop(
    outbox: Outbox, collector: Callable[..., Running], children: list[subprocess.Popen[bytes]]
) -> None:
    run = collector().start(outbox)
    before = time.time() * 1e6
    script = f"import subprocess; subprocess.run([{SLEEP!r}, '30'])"
    parent = spawn(children, sys.executable, "-c", script)

    seen = started(outbox, parent, PYTHON)
    payload = seen.payload
    assert isinstance(payload, ProcessStarted)
    assert type(payload) is ProcessStarted
    assert payload.argv == [sys.executable, "-c", script]
    assert payload.ppid == os.getpid()
    assert (payload.user, payload.uid, seen.os_user) == (ME, os.getuid(), ME)
    assert payload.name.startswith("python")
    assert (payload.hash_status, payload.sha256) == ("ok", sha256_of(PYTHON))
    assert before - 20_000 <= payload.start_time_us <= time.time() * 1e6
    assert not payload.exe_deleted and not payload.argv_truncated

    # The grandchild: its parent is the Python child, not us.
    sleeper = wait_until(
        "the sleep grandchild",
        lambda: [
            s.payload
            for s in events(outbox)
            if isinstance(s.payload, ProcessStarted)
            and s.payload.ppid == parent
            and s.payload.exe == SLEEP
        ],
    )[-1]
    assert sleeper.argv == [SLEEP, "30"]
    assert sleeper.sha256 == sha256_of(SLEEP)

    os.kill(sleeper.pid, signal.SIGTERM)
    children[0].wait(10)
    ended_at = time.time() * 1e6
    for pid, exe in ((sleeper.pid, SLEEP), (parent, PYTHON)):
        stop = stopped(outbox, pid)
        assert (stop.exe, stop.user, stop.uid) == (exe, ME, os.getuid())
        assert stop.exact_time is run.collector.conf.use_connector
        assert 0 < stop.duration_us <= ended_at + 1e6 - stop.start_time_us
    assert stopped(outbox, sleeper.pid).start_time_us == sleeper.start_time_us
    run.stop()


def test_processes_already_running_are_one_snapshot(
    outbox: Outbox, collector: Callable[..., Running], children: list[subprocess.Popen[bytes]]
) -> None:
    pid = spawn_exec(children, SLEEP, "30")
    run = collector().start(outbox)
    (seen,) = wait_until("the snapshot of the sleep", lambda: of_pid(outbox, pid))
    assert seen.kind == "process.running"
    assert isinstance(seen.payload, ProcessRunning)
    assert (seen.payload.exe, seen.payload.sha256) == (SLEEP, sha256_of(SLEEP))
    # Our own process is in the snapshot too, and nothing in it is a kernel thread.
    assert [s.kind for s in of_pid(outbox, os.getpid())] == ["process.running"]
    assert not of_pid(outbox, 2)
    run.stop()


def test_run_as_another_user(
    outbox: Outbox, collector: Callable[..., Running], children: list[subprocess.Popen[bytes]]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("starting a process as another user needs root")
    nobody = pwd.getpwnam("nobody")
    run = collector().start(outbox)
    pid = spawn(children, SLEEP, "30", user=nobody.pw_uid)
    seen = started(outbox, pid, SLEEP)
    assert (image(seen).user, image(seen).uid) == ("nobody", nobody.pw_uid)
    assert seen.os_user == "nobody"
    run.stop()


# ---- restart, exclusions, hashing -----------------------------------------------------


def test_restart_neither_repeats_nor_misses(
    outbox: Outbox, collector: Callable[..., Running], children: list[subprocess.Popen[bytes]]
) -> None:
    survivor = spawn_exec(children, SLEEP, "30")
    ends_while_down = spawn_exec(children, SLEEP, "30")
    first = collector().start(outbox)
    for pid in (survivor, ends_while_down):
        seen = wait_until(f"{pid} seen", lambda: of_pid(outbox, pid))  # noqa: B023
        assert image(seen[0]).exe == SLEEP
    first.stop()
    count = len(events(outbox))

    children[1].kill()
    children[1].wait(10)
    born_while_down = spawn_exec(children, SLEEP, "31")
    second = collector().start(outbox)

    started(outbox, born_while_down, SLEEP)
    stop = stopped(outbox, ends_while_down)
    assert not stop.exact_time  # it ended while no collector was watching
    later = events(outbox)[count:]
    # Nothing already reported comes again: no new snapshot, no repeat of the survivor
    # or of this test process.
    assert not [s for s in later if s.kind == "process.running"]
    assert not [s for s in later if getattr(s.payload, "pid", None) in (survivor, os.getpid())]
    second.stop()


def test_excluded_executables_produce_no_events(
    tmp_path: Path,
    outbox: Outbox,
    collector: Callable[..., Running],
    children: list[subprocess.Popen[bytes]],
) -> None:
    hidden = tmp_path / "hidden-sleep"
    shutil.copy(SLEEP, hidden)
    run = collector(exclude_executables=[f"{tmp_path}/hidden-*"]).start(outbox)
    excluded = spawn_exec(children, str(hidden), "30")
    marker = spawn(children, SLEEP, "30")
    started(outbox, marker, SLEEP)
    for child in children:
        child.kill()
        child.wait(10)
    stopped(outbox, marker)
    assert of_pid(outbox, excluded) == []
    run.stop()
    assert of_pid(outbox, excluded) == []


def test_the_same_binary_is_hashed_once(
    tmp_path: Path,
    outbox: Outbox,
    collector: Callable[..., Running],
    children: list[subprocess.Popen[bytes]],
) -> None:
    binary = tmp_path / "mysleep"
    shutil.copy(SLEEP, binary)
    run = collector()
    hashed: list[str] = []
    run.collector.hasher.on_hash = lambda path, key: hashed.append(path)
    run.start(outbox)
    pids = []
    for n in range(3):
        pids.append(spawn(children, str(binary), str(30 + n)))
        started(outbox, pids[-1], str(binary))
    digests = {image(s).sha256 for pid in pids for s in of_pid(outbox, pid, "process.started")}
    assert digests == {sha256_of(binary)}
    assert hashed.count(str(binary)) == 1
    run.stop()


def test_large_executables_are_flagged_not_hashed(
    outbox: Outbox, collector: Callable[..., Running], children: list[subprocess.Popen[bytes]]
) -> None:
    run = collector(hash_max_bytes=1024).start(outbox)
    pid = spawn(children, SLEEP, "30")
    payload = started(outbox, pid, SLEEP).payload
    assert isinstance(payload, ProcessStarted)
    assert (payload.hash_status, payload.sha256) == ("too_large", "")
    run.stop()


def test_long_command_lines_are_bounded(
    outbox: Outbox, collector: Callable[..., Running], children: list[subprocess.Popen[bytes]]
) -> None:
    run = collector(max_argv_bytes=64).start(outbox)
    pid = spawn(children, SH, "-c", "sleep 30; :", "x" * 1000)
    payload = started(outbox, pid, SH).payload
    assert isinstance(payload, ProcessStarted)
    assert payload.argv_truncated
    assert len("\0".join(payload.argv).encode()) <= 64
    assert payload.argv[:3] == [SH, "-c", "sleep 30; :"]
    run.stop()


# ---- connector specifics ----------------------------------------------------------------


def test_an_exec_is_a_new_image_of_the_same_process(
    outbox: Outbox, collector: Callable[..., Running], children: list[subprocess.Popen[bytes]]
) -> None:
    run = collector().start(outbox)
    if run.collector.connector_status != "active":
        pytest.skip("a late exec is seen only through the connector")
    script = f"import os, time; time.sleep(0.5); os.execv({SLEEP!r}, [{SLEEP!r}, '30'])"
    pid = spawn(children, sys.executable, "-c", script)
    first = started(outbox, pid, PYTHON).payload
    second = started(outbox, pid, SLEEP).payload
    assert isinstance(first, ProcessStarted) and isinstance(second, ProcessStarted)
    assert first.start_time_us == second.start_time_us
    assert second.argv == [SLEEP, "30"]
    assert second.sha256 == sha256_of(SLEEP)
    children[0].kill()
    assert stopped(outbox, pid).exe == SLEEP
    run.stop()


def test_the_connector_catches_processes_that_live_less_than_a_tick(
    outbox: Outbox, collector: Callable[..., Running]
) -> None:
    # At the default tick of 1 s, polling would see each of these with a chance of ~5%;
    # all are seen because the kernel announces each exec. (Processes of ~2 ms are
    # caught too on this machine; 50 ms leaves room for a loaded test machine.)
    run = collector(interval_seconds=1.0).start(outbox)
    if run.collector.connector_status != "active":
        pytest.skip("polling sees a process only if a tick falls within its life")
    pids = []
    for _ in range(10):
        child = subprocess.Popen([SLEEP, "0.05"])
        child.wait(10)
        pids.append(child.pid)
    for pid in pids:
        assert image(started(outbox, pid, SLEEP)).argv == [SLEEP, "0.05"]
        stop = stopped(outbox, pid)
        assert stop.exact_time
        assert 40_000 <= stop.duration_us < 5_000_000
    run.stop()


def test_a_fork_that_never_execs_is_found_without_listing_proc(
    outbox: Outbox, collector: Callable[..., Running], children: list[subprocess.Popen[bytes]]
) -> None:
    """With the connector, /proc is listed only every _RECONCILE_SECONDS: a forked
    child that keeps its parent's image is found through the kernel's fork event."""
    run = collector().start(outbox)
    if run.collector.connector_status != "active":
        pytest.skip("polling finds forks by listing /proc")
    wait_until("the first snapshot", lambda: events(outbox))
    script = "import os, time\nif os.fork() == 0:\n    time.sleep(30)\nos.wait()"
    parent = spawn(children, sys.executable, "-c", script)
    started(outbox, parent, PYTHON)
    child = wait_until(
        "the forked child",
        lambda: [
            s.payload
            for s in events(outbox)
            if isinstance(s.payload, ProcessStarted) and s.payload.ppid == parent
        ],
    )[-1]
    assert child.exe == PYTHON and child.argv == [sys.executable, "-c", script]
    os.kill(child.pid, signal.SIGKILL)
    assert stopped(outbox, child.pid).exact_time
    children[0].wait(10)
    run.stop()


def test_without_connector_it_says_it_polls(outbox: Outbox) -> None:
    run = Running(outbox, use_connector=False, interval_seconds=0.2).start(outbox)
    assert run.collector.connector_status == "off: disabled by settings (polling /proc)"
    run.stop()


# Runs the collector inside a new pid namespace (with its own /proc), as in a container,
# and reports its connector status and whether it saw a process started there.
IN_NAMESPACE = """
import pathlib, subprocess, sys, threading, time
from sekimori.agent.collectors.base import Sink
from sekimori.agent.collectors.processes import ProcessCollector, ProcessSettings
from sekimori.agent.outbox import Outbox
from sekimori.protocol.codec import decode_payload

box = Outbox(pathlib.Path(sys.argv[1]), max_bytes=1 << 30)
collector = ProcessCollector(ProcessSettings(interval_seconds=0.1), Sink(box, "processes"))
stop = threading.Event()
thread = threading.Thread(target=collector.run, args=(stop,))
thread.start()
def kinds_of(pid):
    return [
        e.kind for e in box.peek(0, max_events=100000, max_bytes=1 << 30)
        if getattr(decode_payload(e.kind, e.payload), "pid", None) == pid
    ]
deadline = time.monotonic() + 10
while not kinds_of(1) and time.monotonic() < deadline:
    time.sleep(0.02)
child = subprocess.Popen(["sleep", "30"])
while "process.started" not in kinds_of(child.pid) and time.monotonic() < deadline:
    time.sleep(0.02)
child.kill()
child.wait()
stop.set()
thread.join()
print(collector.connector_status)
print(kinds_of(child.pid))
box.close()
"""


def test_in_a_container_it_falls_back_to_polling(tmp_path: Path) -> None:
    """A new pid namespace is what a container is to the kernel: the connector is not
    acknowledged there, and polling /proc must carry on alone."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("creating a pid namespace needs root and unshare")
    namespace = ["unshare", "--pid", "--fork", "--mount-proc"]
    out = subprocess.run(
        [*namespace, sys.executable, "-c", IN_NAMESPACE, str(tmp_path / "ns.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith("unavailable: the kernel did not acknowledge")
    assert out[0].endswith("(polling /proc)")
    assert "process.started" in out[1]


# ---- failures and settings ------------------------------------------------------------


def test_without_proc_it_fails_permanently(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(procs, "PROC", str(tmp_path / "no-proc"))
    conf = ProcessSettings()
    with pytest.raises(CollectorError, match="cannot read /proc") as caught:
        ProcessCollector(conf, Sink(outbox, "processes")).run(threading.Event())
    assert caught.value.permanent


def test_settings_are_validated(outbox: Outbox) -> None:
    assert COLLECTORS["processes"] is ProcessCollector
    with pytest.raises(msgspec.ValidationError, match="interval_seconds"):
        msgspec.convert({"interval_seconds": 0}, ProcessSettings)
    with pytest.raises(CollectorConfigError, match="processes"):
        Supervisor(outbox, COLLECTORS, {"processes": {"exclude_executables": "not a list"}})
    with pytest.raises(CollectorConfigError, match="hash_limit"):
        Supervisor(outbox, COLLECTORS, {"processes": {"hash_limit": 1}})
