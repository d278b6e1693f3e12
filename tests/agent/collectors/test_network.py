"""The network collector against real sockets of this machine (nothing is mocked).

The test opens real listening sockets on a non-loopback address of this machine (or,
where there is none, on 127.0.0.1 with loopback included) and starts real child
processes (Python, bash) that connect to them; the collector's ``run()`` reads the
kernel's socket table in a thread and writes its summaries to a real outbox.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest

from sekimori.agent.collectors.base import CollectorError, Sink
from sekimori.agent.collectors.network import NetworkCollector, NetworkSettings
from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.agent.collectors.supervisor import CollectorConfigError, Supervisor
from sekimori.agent.outbox import Outbox
from sekimori.agent.platform.linux import netconns, procs
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events.network import Connection, NetworkConnections

PYTHON = os.path.realpath(sys.executable)
BASH = os.path.realpath(shutil.which("bash") or "/bin/bash")
ME = pwd.getpwuid(os.getuid()).pw_name
FAST = {"interval_seconds": 0.4, "sample_seconds": 0.1}

# Connects to each "proto,host,port" argument, prints each local port, and holds the
# sockets open until its stdin is closed.
CHILD = """
import socket, sys
held = []
for spec in sys.argv[1:]:
    proto, host, port = spec.split(",")
    if proto == "tcp":
        s = socket.create_connection((host, int(port)))
    else:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((host, int(port)))
    held.append(s)
    print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


def _non_loopback_address() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family != socket.AF_INET:
                continue
            ip = ipaddress.ip_address(address.address)
            if not ip.is_loopback and not ip.is_link_local:
                return str(ip)
    return None


HOST = _non_loopback_address()
# Where this machine has no other address, loopback stands in (and must be included).
ADDRESS = HOST or "127.0.0.1"
BASE = {**FAST, "include_loopback": HOST is None}


class Child:
    """A real process holding outbound sockets; ``local_ports`` as it reports them."""

    def __init__(self, *specs: tuple[str, str, int]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, *(f"{p},{h},{n}" for p, h, n in specs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.local_ports = [int(self.proc.stdout.readline()) for _ in specs]
        self.pid = self.proc.pid

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture
def child_factory() -> Iterator[Callable[..., Child]]:
    made: list[Child] = []

    def make(*specs: tuple[str, str, int]) -> Child:
        made.append(Child(*specs))
        return made[-1]

    yield make
    for child in made:
        child.close()


@pytest.fixture
def listener() -> Iterator[Callable[[str], socket.socket]]:
    """Listening TCP sockets on a given address, accepting in the background."""
    opened: list[socket.socket] = []
    accepted: list[socket.socket] = []

    def accept_all(server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed at the end of the test
            accepted.append(conn)

    def make(address: str) -> socket.socket:
        server = socket.socket()
        server.bind((address, 0))
        server.listen()
        opened.append(server)
        threading.Thread(target=accept_all, args=(server,), daemon=True).start()
        return server

    yield make
    for server in opened:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
    for conn in accepted:
        conn.close()


def port_of(server: socket.socket) -> int:
    return int(server.getsockname()[1])


class Running:
    def __init__(self, outbox: Outbox, **settings: Any) -> None:
        conf = msgspec.convert(settings, NetworkSettings)
        self.collector = NetworkCollector(conf, Sink(outbox, "network"))
        self.stop_event = threading.Event()
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.collector.run(self.stop_event)
        # Any failure is kept and raised again by stop(), in the test's thread.
        except Exception as exc:  # noqa: BLE001
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    runs: list[Running] = []

    def make(outbox: Outbox, **settings: Any) -> Running:
        runs.append(Running(outbox, **{**BASE, **settings}))
        return runs[-1]

    yield make
    for run in runs:
        if run.thread.is_alive():
            run.stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    yield box
    box.close()


def summaries(outbox: Outbox) -> list[NetworkConnections]:
    out = []
    for event in outbox.peek(0, max_events=100_000, max_bytes=1 << 30):
        assert event.kind == "network.connections"
        payload = decode_payload(event.kind, event.payload)
        assert isinstance(payload, NetworkConnections)
        out.append(payload)
    return out


def entries(outbox: Outbox, pid: int, port: int) -> list[Connection]:
    return [
        c
        for s in summaries(outbox)
        for c in s.connections
        if c.pid == pid and c.remote_port == port
    ]


def wait_entry(outbox: Outbox, pid: int, port: int, timeout: float = 10.0) -> Connection:
    deadline = time.monotonic() + timeout
    while not (found := entries(outbox, pid, port)):
        if time.monotonic() > deadline:
            pytest.fail(f"no entry for pid {pid} to port {port} in {summaries(outbox)}")
        time.sleep(0.05)
    return found[-1]


# ---- what is reported ---------------------------------------------------------------------


def test_a_childs_tcp_and_udp_connections_are_summarized(
    outbox: Outbox,
    running: Callable[..., Running],
    listener: Callable[[str], socket.socket],
    child_factory: Callable[..., Child],
) -> None:
    server = listener(ADDRESS)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp_server:
        udp_server.bind((ADDRESS, 0))
        udp_port = int(udp_server.getsockname()[1])
        run = running(outbox)
        child = child_factory(("tcp", ADDRESS, port_of(server)), ("udp", ADDRESS, udp_port))
        tcp = wait_entry(outbox, child.pid, port_of(server))
        udp = wait_entry(outbox, child.pid, udp_port)
        run.stop()
    assert (tcp.protocol, tcp.remote_address, tcp.exe, tcp.user) == ("tcp", ADDRESS, PYTHON, ME)
    assert tcp.local_ports == [child.local_ports[0]]
    assert tcp.count == 1
    assert tcp.first_seen_us <= tcp.last_seen_us
    assert (udp.protocol, udp.remote_address, udp.local_ports) == (
        "udp",
        ADDRESS,
        [child.local_ports[1]],
    )
    (summary,) = [s for s in summaries(outbox) if tcp in s.connections]
    assert summary.period_start_us <= tcp.first_seen_us <= summary.period_end_us
    # The accepted side of the connection (this test process, on the listening port) is
    # inbound: it is not reported.
    assert not [
        c
        for s in summaries(outbox)
        for c in s.connections
        if c.pid == os.getpid() and c.remote_port == child.local_ports[0]
    ]


def test_loopback_is_left_out_unless_included(
    tmp_path: Path,
    outbox: Outbox,
    running: Callable[..., Running],
    listener: Callable[[str], socket.socket],
    child_factory: Callable[..., Child],
) -> None:
    if HOST is None:
        pytest.skip("this machine has no non-loopback address to compare with")
    outside, inside = listener(HOST), listener("127.0.0.1")
    child = child_factory(("tcp", HOST, port_of(outside)), ("tcp", "127.0.0.1", port_of(inside)))
    run = running(outbox, include_loopback=False)
    wait_entry(outbox, child.pid, port_of(outside))
    run.stop()
    assert entries(outbox, child.pid, port_of(inside)) == []

    other = Outbox(tmp_path / "o2.db", max_bytes=1 << 30)
    try:
        again = running(other, include_loopback=True)
        loop = wait_entry(other, child.pid, port_of(inside))
        again.stop()
        assert loop.remote_address == "127.0.0.1"
    finally:
        other.close()


@pytest.mark.parametrize("report_persistent", [False, True])
def test_a_lasting_connection_is_reported_once_unless_configured(
    report_persistent: bool,
    outbox: Outbox,
    running: Callable[..., Running],
    listener: Callable[[str], socket.socket],
    child_factory: Callable[..., Child],
) -> None:
    first_server, marker_server = listener(ADDRESS), listener(ADDRESS)
    run = running(outbox, report_persistent=report_persistent)
    lasting = child_factory(("tcp", ADDRESS, port_of(first_server)))
    first = wait_entry(outbox, lasting.pid, port_of(first_server))
    # A later connection marks a later period, in which the first one is still open.
    marker = child_factory(("tcp", ADDRESS, port_of(marker_server)))
    wait_entry(outbox, marker.pid, port_of(marker_server))
    run.stop()
    later = next(s for s in summaries(outbox) if any(c.pid == marker.pid for c in s.connections))
    repeated = [c for c in later.connections if c.pid == lasting.pid]
    if report_persistent:
        assert [c.first_seen_us for c in repeated] == [first.first_seen_us]
    else:
        assert repeated == []
        assert len(entries(outbox, lasting.pid, port_of(first_server))) == 1


def test_restart_does_not_report_again(
    outbox: Outbox,
    running: Callable[..., Running],
    listener: Callable[[str], socket.socket],
    child_factory: Callable[..., Child],
) -> None:
    server, marker_server = listener(ADDRESS), listener(ADDRESS)
    lasting = child_factory(("tcp", ADDRESS, port_of(server)))
    first = running(outbox)
    wait_entry(outbox, lasting.pid, port_of(server))
    first.stop()

    second = running(outbox)
    marker = child_factory(("tcp", ADDRESS, port_of(marker_server)))
    wait_entry(outbox, marker.pid, port_of(marker_server))
    second.stop()
    assert len(entries(outbox, lasting.pid, port_of(server))) == 1


def test_excluded_executables_are_left_out(
    outbox: Outbox,
    running: Callable[..., Running],
    listener: Callable[[str], socket.socket],
    child_factory: Callable[..., Child],
) -> None:
    server = listener(ADDRESS)
    run = running(outbox, exclude_executables=[PYTHON])
    hidden = child_factory(("tcp", ADDRESS, port_of(server)))
    # bash opens its own connection (its /dev/tcp redirection) and holds it.
    script = f"exec 3<>/dev/tcp/{ADDRESS}/{port_of(server)}; read -r _"
    with subprocess.Popen([BASH, "-c", script], stdin=subprocess.PIPE) as shown:
        assert shown.stdin is not None
        entry = wait_entry(outbox, shown.pid, port_of(server))
        shown.stdin.close()
    run.stop()
    assert entry.exe == BASH
    assert entries(outbox, hidden.pid, port_of(server)) == []


def test_a_summary_is_bounded(
    outbox: Outbox,
    running: Callable[..., Running],
    listener: Callable[[str], socket.socket],
    child_factory: Callable[..., Child],
) -> None:
    a, b = listener(ADDRESS), listener(ADDRESS)
    child_factory(("tcp", ADDRESS, port_of(a)), ("tcp", ADDRESS, port_of(b)))
    run = running(outbox, max_entries=1)
    # The child's two connections were open before the collector started: the first
    # summary has at least those two new entries, and room for one.
    deadline = time.monotonic() + 10
    while not summaries(outbox):
        assert time.monotonic() < deadline, "no summary"
        time.sleep(0.05)
    run.stop()
    first = summaries(outbox)[0]
    assert len(first.connections) == 1
    assert first.omitted >= 1


# ---- the platform reader ------------------------------------------------------------------


def test_both_socket_tables_see_the_connection_and_its_owner(
    listener: Callable[[str], socket.socket], child_factory: Callable[..., Child]
) -> None:
    server = listener(ADDRESS)
    child = child_factory(("tcp", ADDRESS, port_of(server)))
    rows = {}
    for source in ("sock_diag", "proc"):
        (row,) = [
            r
            for r in netconns.read_outbound(source=source)
            if r.local_port == child.local_ports[0] and r.remote_port == port_of(server)
        ]
        rows[source] = row
    assert rows["sock_diag"] == rows["proc"]
    owners = netconns.SocketOwners()
    assert owners.find([rows["proc"].inode]) == {rows["proc"].inode: child.pid}
    scanned = owners.processes_scanned
    # Known inodes are answered from memory, without reading fd tables again.
    assert owners.find([rows["proc"].inode]) == {rows["proc"].inode: child.pid}
    assert owners.processes_scanned == scanned
    # So is an inode no process holds: one full scan, then remembered as ownerless.
    assert owners.find([rows["proc"].inode, 1]) == {rows["proc"].inode: child.pid}
    scanned = owners.processes_scanned
    assert owners.find([rows["proc"].inode, 1]) == {rows["proc"].inode: child.pid}
    assert owners.processes_scanned == scanned


# ---- failures and settings ------------------------------------------------------------


def test_without_proc_it_fails_permanently(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(procs, "PROC", str(tmp_path / "no-proc"))
    collector = NetworkCollector(NetworkSettings(), Sink(outbox, "network"))
    with pytest.raises(CollectorError, match="cannot read /proc") as caught:
        collector.run(threading.Event())
    assert caught.value.permanent


def test_settings_are_validated(outbox: Outbox) -> None:
    assert COLLECTORS["network"] is NetworkCollector
    defaults = NetworkSettings()
    assert (defaults.interval_seconds, defaults.include_loopback) == (60.0, False)
    with pytest.raises(CollectorConfigError, match="network"):
        Supervisor(outbox, COLLECTORS, {"network": {"sample_seconds": -1}})
