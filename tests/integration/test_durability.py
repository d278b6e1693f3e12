"""Nothing is lost: real processes killed with SIGKILL in the middle of a 100,000-event
stream, a server that is down for a while, and an outbox that fills up."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgspec
import sqlalchemy as sa

from sekimori.agent.outbox import Outbox, PendingEvent
from sekimori.protocol.events import AgentLog
from tests.processes import AgentProcess, ServerProcess, wait_for

N = 100_000


def _fill(state_dir: Path, count: int, start: int = 0, max_bytes: int = 1 << 30) -> None:
    outbox = Outbox(state_dir / "outbox.db", max_bytes=max_bytes)
    try:
        for offset in range(start, start + count, 10_000):
            outbox.append_many(
                PendingEvent(
                    "agent.log",
                    msgspec.msgpack.encode(
                        AgentLog(level="info", source="test", message=f"event {i}")
                    ),
                    os_user="alice",
                )
                for i in range(offset, min(offset + 10_000, start + count))
            )
    finally:
        outbox.close()


def _stored(server: ServerProcess) -> int:
    return server.scalar("SELECT count(*) FROM events WHERE kind = 'agent.log'")


def _outbox_depth(state_dir: Path) -> int:
    db = sqlite3.connect(f"file:{state_dir / 'outbox.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def _assert_exactly_once(server: ServerProcess, device_id: str, count: int) -> None:
    assert _stored(server) == count
    distinct = server.scalar(
        "SELECT count(DISTINCT payload) FROM events WHERE device_id = :d AND kind = 'agent.log'",
        d=device_id,
    )
    assert distinct == count, "every event's payload appears exactly once"


def test_server_killed_mid_stream_loses_and_doubles_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    identity = server.enroll(tmp_path / "pc")
    _fill(tmp_path / "pc", N)
    agent = AgentProcess(tmp_path / "pc").start()
    try:
        wait_for(lambda: _stored(server) >= N // 5, 120, "a fifth of the stream stored", 0.02)
        server.kill()
        at_kill = _stored(server)
        assert at_kill < N, "the kill must land in the middle of the stream"
        time.sleep(1.0)
        server.start(pinned_ports=True)
        wait_for(lambda: _stored(server) >= N, 180, "the whole stream stored", 0.2)
        wait_for(lambda: _outbox_depth(tmp_path / "pc") == 0, 30, "outbox drained")
        _assert_exactly_once(server, identity.device_id, N)
    finally:
        agent.stop()


def test_agent_killed_mid_stream_loses_and_doubles_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    identity = server.enroll(tmp_path / "pc")
    _fill(tmp_path / "pc", N)
    agent = AgentProcess(tmp_path / "pc").start()
    wait_for(lambda: _stored(server) >= N // 5, 120, "a fifth of the stream stored", 0.02)
    agent.kill()
    assert _stored(server) < N, "the kill must land in the middle of the stream"
    assert _outbox_depth(tmp_path / "pc") > 0
    agent = AgentProcess(tmp_path / "pc").start()
    try:
        wait_for(lambda: _outbox_depth(tmp_path / "pc") == 0, 180, "outbox drained", 0.2)
        _assert_exactly_once(server, identity.device_id, N)
        # Two start-up events: the one before the kill and the one after.
        assert server.scalar("SELECT count(*) FROM events WHERE kind = 'agent.started'") == 2
    finally:
        agent.stop()


def test_agent_keeps_queueing_while_the_server_is_down(
    server: ServerProcess, tmp_path: Path
) -> None:
    identity = server.enroll(tmp_path / "pc")
    agent = AgentProcess(tmp_path / "pc").start()
    try:
        wait_for(
            lambda: server.scalar("SELECT count(*) FROM devices WHERE connected") == 1,
            20,
            "agent connected",
        )
        server.stop()
        _fill(tmp_path / "pc", 5_000)
        wait_for(lambda: agent.log().count("reconnecting in") >= 3, 30, "agent retrying")
        assert agent.running()
        assert _outbox_depth(tmp_path / "pc") >= 5_000
        server.start(pinned_ports=True)
        wait_for(lambda: _outbox_depth(tmp_path / "pc") == 0, 60, "outbox drained", 0.2)
        _assert_exactly_once(server, identity.device_id, 5_000)
    finally:
        assert agent.stop() == 0


def test_a_full_outbox_drops_the_oldest_and_says_how_many(
    server: ServerProcess, tmp_path: Path
) -> None:
    server.enroll(tmp_path / "pc")
    # ~100 bytes per event: a 200 kB outbox holds about 2,000 of the 5,000.
    _fill(tmp_path / "pc", 5_000, max_bytes=200_000)
    agent = AgentProcess(tmp_path / "pc").start()
    try:
        wait_for(lambda: _outbox_depth(tmp_path / "pc") == 0, 60, "outbox drained", 0.2)
        dropped = server.scalar("SELECT count(*) FROM events WHERE kind = 'agent.outbox_dropped'")
        assert dropped >= 1
        with server.engine().connect() as conn:
            payloads = (
                conn.execute(
                    sa.text("SELECT payload FROM events WHERE kind = 'agent.outbox_dropped'")
                )
                .scalars()
                .all()
            )
        lost = sum(msgspec.json.decode(p)["count"] for p in payloads)
        # Every event is either stored or counted as dropped: none vanishes silently.
        assert _stored(server) + lost == 5_000
        assert 0 < lost < 5_000
        newest = server.scalar("SELECT count(*) FROM events WHERE payload LIKE '%event 4999\"%'")
        assert newest == 1, "the newest events are kept"
    finally:
        agent.stop()
