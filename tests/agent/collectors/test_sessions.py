"""The session collector.

What this machine cannot produce is made in the test and said so:
* logons: no second user can log on here and there is no /var/run/utmp, so a real
  utmp-format file (glibc's 384-byte struct utmp, see tests/agent/platform/
  test_utmp.py) is written in tmp and records are appended or overwritten between
  the collector's ticks (``utmp_path``);
* a reboot: the boot id is read from a fixture file (``boot_id_path``) that the test
  rewrites between two runs, as the kernel does at boot; the boot time comes from a
  /proc/stat fixture (``stat_path``);
* a suspend: this machine cannot sleep, so the (CLOCK_BOOTTIME, CLOCK_MONOTONIC)
  source is replaced by one the test advances (``collector.clocks``).
Screen lock/unlock is not observable here (no logind, no desktop) and not reported.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sekimori.agent.collectors.base import CollectorError, Sink
from sekimori.agent.collectors.sessions import SessionCollector, SessionSettings
from sekimori.agent.outbox import Outbox
from sekimori.agent.platform.linux.utmp import DEAD_PROCESS, USER_PROCESS
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import Payload
from sekimori.protocol.events.session import Boot, Logoff, Logon, Resume, Shutdown, Suspend
from tests.agent.collectors.harness import RunningCollector
from tests.agent.platform.test_utmp import utmp_record

Seen = tuple[str, int, str | None, Payload]
BTIME = 1_736_755_200  # the fixture's boot time, seconds


def events(outbox: Outbox) -> list[Seen]:
    return [
        (e.kind, e.time_us, e.os_user, decode_payload(e.kind, e.payload))
        for e in outbox.peek(0, max_events=100_000, max_bytes=1 << 30)
    ]


def kinds(outbox: Outbox) -> list[str]:
    return [k for k, _, _, _ in events(outbox)]


def wait_for(outbox: Outbox, found: Callable[[list[str]], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not found(kinds(outbox)):
        if time.monotonic() > deadline:
            pytest.fail(f"expected event did not appear; got {events(outbox)}")
        time.sleep(0.02)


class FakeClocks:
    """(CLOCK_BOOTTIME, CLOCK_MONOTONIC) that the test can put to sleep."""

    def __init__(self) -> None:
        self.asleep_ns = 5_000_000_000

    def __call__(self) -> tuple[int, int]:
        monotonic = time.monotonic_ns()
        return monotonic + self.asleep_ns, monotonic


class Running(RunningCollector):
    """The collector's run() in a thread (see harness.RunningCollector)."""

    def __init__(
        self, outbox: Outbox, clocks: Callable[[], tuple[int, int]] | None = None, **settings: Any
    ) -> None:
        settings.setdefault("interval_seconds", 0.05)
        conf = msgspec.convert(settings, SessionSettings)
        collector = SessionCollector(conf, Sink(outbox, "sessions"))
        if clocks is not None:
            collector.clocks = clocks
        super().__init__(collector)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    yield box
    box.close()


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, Any]:
    """Settings pointing at this test's utmp, boot id and /proc/stat files."""
    (tmp_path / "boot_id").write_text(str(uuid.uuid4()) + "\n")
    (tmp_path / "stat").write_text(f"cpu  1 2 3 4\nbtime {BTIME}\nprocesses 100\n")
    (tmp_path / "utmp").write_bytes(b"")
    return {
        "utmp_path": str(tmp_path / "utmp"),
        "boot_id_path": str(tmp_path / "boot_id"),
        "stat_path": str(tmp_path / "stat"),
    }


def append(path: str, record: bytes) -> None:
    with open(path, "ab") as f:
        f.write(record)


def ssh_login(pid: int = 4321, sec: int = BTIME + 3600) -> bytes:
    return utmp_record(
        USER_PROCESS,
        pid=pid,
        line="pts/0",
        ut_id="ts/0",
        user="alice",
        host="203.0.113.7",
        sec=sec,
        addr=bytes([203, 0, 113, 7]),
    )


def test_first_run_reports_the_boot_and_open_sessions_once(
    outbox: Outbox, machine: dict[str, Any]
) -> None:
    append(
        machine["utmp_path"],
        utmp_record(USER_PROCESS, pid=900, line="tty2", user="bob", host=":0", sec=BTIME + 60),
    )
    running = Running(outbox, **machine)
    wait_for(outbox, lambda k: k == ["session.boot", "session.logon"])
    running.stop()
    (boot, logon) = events(outbox)
    boot_id = Path(machine["boot_id_path"]).read_text().strip()
    assert boot == (
        "session.boot",
        BTIME * 10**6,
        None,
        Boot(boot_id=boot_id, boot_time_us=BTIME * 10**6),
    )
    assert logon == (
        "session.logon",
        (BTIME + 60) * 10**6,
        "bob",
        Logon(
            user="bob",
            tty="tty2",
            host=":0",
            remote=False,
            pid=900,
            login_time_us=(BTIME + 60) * 10**6,
            present_at_start=True,
        ),
    )
    # Restarted on the same boot with nothing changed: nothing repeated.
    running = Running(outbox, **machine)
    append(machine["utmp_path"], ssh_login())
    wait_for(outbox, lambda k: k.count("session.logon") == 2)
    running.stop()
    assert kinds(outbox) == ["session.boot", "session.logon", "session.logon"]


def test_remote_logon_and_logoff(outbox: Outbox, machine: dict[str, Any]) -> None:
    running = Running(outbox, **machine)
    try:
        wait_for(outbox, lambda k: k == ["session.boot"])
        append(machine["utmp_path"], ssh_login())
        wait_for(outbox, lambda k: "session.logon" in k)
        # sshd's logout overwrites the same slot with a DEAD_PROCESS record.
        dead = utmp_record(DEAD_PROCESS, pid=4321, line="pts/0", ut_id="ts/0", sec=BTIME + 7200)
        with open(machine["utmp_path"], "r+b") as f:
            f.write(dead)
        wait_for(outbox, lambda k: "session.logoff" in k)
    finally:
        running.stop()
    login_us = (BTIME + 3600) * 10**6
    remote: dict[str, Any] = {
        "user": "alice",
        "tty": "pts/0",
        "host": "203.0.113.7",
        "address": "203.0.113.7",
        "remote": True,
        "pid": 4321,
        "login_time_us": login_us,
    }
    assert events(outbox)[1:] == [
        ("session.logon", login_us, "alice", Logon(**remote)),
        ("session.logoff", (BTIME + 7200) * 10**6, "alice", Logoff(**remote, reason="logout")),
    ]


def test_reboot_is_seen_as_shutdown_then_boot(outbox: Outbox, machine: dict[str, Any]) -> None:
    append(machine["utmp_path"], ssh_login())
    running = Running(outbox, **machine)
    wait_for(outbox, lambda k: k == ["session.boot", "session.logon"])
    before_stop = time.time_ns() // 1000
    running.stop()
    after_stop = time.time_ns() // 1000
    old_boot = Path(machine["boot_id_path"]).read_text().strip()

    # The PC restarts: a new boot id, a later boot time, utmp emptied at boot.
    new_boot = str(uuid.uuid4())
    Path(machine["boot_id_path"]).write_text(new_boot + "\n")
    Path(machine["stat_path"]).write_text(f"btime {BTIME + 86400}\n")
    Path(machine["utmp_path"]).write_bytes(b"")
    running = Running(outbox, **machine)
    wait_for(outbox, lambda k: k.count("session.boot") == 2)
    running.stop()

    logoff, shutdown, boot = events(outbox)[2:]
    last_seen = shutdown[1]
    assert before_stop <= last_seen <= after_stop  # saved when the agent stopped
    assert shutdown[3] == Shutdown(boot_id=old_boot, last_seen_us=last_seen, agent_stopped=True)
    assert logoff[0] == "session.logoff" and logoff[1] == last_seen
    assert isinstance(logoff[3], Logoff) and logoff[3].reason == "shutdown"
    assert boot == (
        "session.boot",
        (BTIME + 86400) * 10**6,
        None,
        Boot(
            boot_id=new_boot,
            boot_time_us=(BTIME + 86400) * 10**6,
            previous_boot_id=old_boot,
            previous_last_seen_us=last_seen,
        ),
    )


def test_power_cut_is_a_shutdown_without_agent_stop(
    outbox: Outbox, machine: dict[str, Any]
) -> None:
    # The state a previous run left when it was killed (no orderly stop): its last
    # heartbeat on another boot.
    cursor = {"boot_id": "old-boot", "last_seen_us": 1_700_000_000_000_000, "sessions": []}
    outbox.save_cursor("collector.sessions", msgspec.msgpack.encode(cursor))
    running = Running(outbox, **machine)
    wait_for(outbox, lambda k: k == ["session.shutdown", "session.boot"])
    running.stop()
    shutdown = events(outbox)[0]
    assert shutdown[1:] == (
        1_700_000_000_000_000,
        None,
        Shutdown(boot_id="old-boot", last_seen_us=1_700_000_000_000_000, agent_stopped=False),
    )


def test_heartbeat_keeps_last_seen_fresh(outbox: Outbox, machine: dict[str, Any]) -> None:
    running = Running(outbox, heartbeat_seconds=0.1, **machine)
    try:
        wait_for(outbox, lambda k: k == ["session.boot"])
        first = msgspec.msgpack.decode(outbox.cursor("collector.sessions") or b"")["last_seen_us"]
        deadline = time.monotonic() + 10
        while (
            msgspec.msgpack.decode(outbox.cursor("collector.sessions") or b"")["last_seen_us"]
            == first
        ):
            assert time.monotonic() < deadline, "last seen never advanced"
            time.sleep(0.02)
    finally:
        running.stop()


def test_suspend_and_resume_from_the_clock_gap(outbox: Outbox, machine: dict[str, Any]) -> None:
    clocks = FakeClocks()
    running = Running(outbox, clocks=clocks, **machine)
    try:
        wait_for(outbox, lambda k: k == ["session.boot"])
        clocks.asleep_ns += 200_000_000  # 0.2 s: below the threshold, not a suspend
        clocks.asleep_ns += 30 * 10**9  # then 30 s asleep
        wait_for(outbox, lambda k: "session.resume" in k)
    finally:
        running.stop()
    suspend, resume = events(outbox)[1:]
    slept = 30_200_000
    assert suspend[0] == "session.suspend" and suspend[3] == Suspend(suspended_us=slept)
    assert resume[0] == "session.resume" and resume[3] == Resume(suspended_us=slept)
    assert resume[1] - suspend[1] == slept


def test_small_clock_growth_is_not_a_suspend(outbox: Outbox, machine: dict[str, Any]) -> None:
    clocks = FakeClocks()
    running = Running(outbox, clocks=clocks, **machine)
    try:
        wait_for(outbox, lambda k: k == ["session.boot"])
        clocks.asleep_ns += 500_000_000
        append(machine["utmp_path"], ssh_login())  # a later event shows the tick ran
        wait_for(outbox, lambda k: "session.logon" in k)
    finally:
        running.stop()
    assert kinds(outbox) == ["session.boot", "session.logon"]


def test_no_utmp_still_reports_boots(
    outbox: Outbox, machine: dict[str, Any], tmp_path: Path
) -> None:
    running = Running(outbox, **{**machine, "utmp_path": str(tmp_path / "missing")})
    wait_for(outbox, lambda k: k == ["session.boot"])
    running.stop()


def test_unreadable_boot_id_fails_with_the_reason(
    outbox: Outbox, machine: dict[str, Any], tmp_path: Path
) -> None:
    conf = SessionSettings(**{**machine, "boot_id_path": str(tmp_path / "missing")})
    with pytest.raises(CollectorError, match="cannot read the boot id"):
        SessionCollector(conf, Sink(outbox, "sessions")).run(threading.Event())
