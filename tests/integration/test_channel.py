"""The agent<->server channel with real processes: online status, no listening
socket, revocation within a second, refusal of a foreign server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil

from sekimori.agent.runtime import EXIT_REFUSED
from sekimori.server.store.devices import revoke_device
from tests.processes import AgentProcess, ServerProcess, wait_for


def _device_status(server: ServerProcess) -> list[dict[str, object]]:
    result = server.cli("device", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def _connected(server: ServerProcess, device_id: str) -> bool:
    return bool(
        server.scalar("SELECT count(*) FROM devices WHERE id = :id AND connected", id=device_id)
    )


def test_agent_comes_online_and_listens_on_no_port(server: ServerProcess, tmp_path: Path) -> None:
    identity = server.enroll(tmp_path / "pc")
    agent = AgentProcess(tmp_path / "pc").start()
    try:
        wait_for(lambda: _connected(server, identity.device_id), 20, "agent connected")
        rows = _device_status(server)
        assert [r["id"] for r in rows] == [identity.device_id]
        assert rows[0]["status"] == "online"
        assert rows[0]["agent_version"] == "0.1.0"
        # The agent only dials out: no socket of it is in LISTEN state, and it has
        # an established connection to the server's agent port.
        conns = psutil.Process(agent.pid).net_connections(kind="all")
        assert not [c for c in conns if c.status == psutil.CONN_LISTEN]
        assert any(
            c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr[1] == server.agent_port
            for c in conns
        )
        # Its start-up event went through the outbox into the store.
        wait_for(
            lambda: (
                server.scalar(
                    "SELECT count(*) FROM events WHERE device_id = :id AND kind = 'agent.started'",
                    id=identity.device_id,
                )
                == 1
            ),
            10,
            "agent.started stored",
        )
        assert "sekimori_agents_connected 1.0" in server.metrics()
        shown = server.cli(
            "events",
            "--device",
            identity.device_id[:8],
            "--since",
            "5m",
            "--json",
            "--kind",
            "agent.started",
        )
        assert shown.returncode == 0, shown.stderr
        records = [json.loads(line) for line in shown.stdout.splitlines()]
        started = [r for r in records if r["kind"] == "agent.started"]
        assert started and started[0]["payload"]["pid"] == agent.pid
        table = server.cli("events", "--device", identity.device_id, "--kind", "agent.started")
        assert "agent.started" in table.stdout
    finally:
        assert agent.stop() == 0
    wait_for(lambda: not _connected(server, identity.device_id), 10, "device offline")
    assert _device_status(server)[0]["status"] == "offline"


def test_revoked_device_is_disconnected_within_a_second(
    server: ServerProcess, tmp_path: Path
) -> None:
    identity = server.enroll(tmp_path / "pc")
    agent = AgentProcess(tmp_path / "pc").start()
    try:
        wait_for(lambda: _connected(server, identity.device_id), 20, "agent connected")
        assert revoke_device(server.engine(), identity.device_id)
        revoked_at = time.monotonic()
        assert agent.proc is not None
        agent.proc.wait(10)
        took = time.monotonic() - revoked_at
        assert agent.proc.returncode == EXIT_REFUSED
        assert took < 1.0, f"revoked device still connected after {took:.2f} s"
        assert "revoked" in agent.log()
        # And it is refused from then on.
        again = AgentProcess(tmp_path / "pc").start()
        assert again.proc is not None
        assert again.proc.wait(20) == EXIT_REFUSED
        assert _device_status(server)[0]["status"] == "revoked"
    finally:
        if agent.running():
            agent.kill()


def test_revoke_cli_accepts_a_unique_prefix(server: ServerProcess, tmp_path: Path) -> None:
    identity = server.enroll(tmp_path / "pc")
    result = server.cli("device", "revoke", identity.device_id[:8])
    assert result.returncode == 0, result.stderr
    assert f"device {identity.device_id} revoked" in result.stdout
    missing = server.cli("device", "revoke", "ffffffff-0000")
    assert missing.returncode == 1
    assert "no device" in missing.stderr


def test_agent_refuses_a_server_of_another_deployment(
    server: ServerProcess, tmp_path: Path, database_url: str
) -> None:
    identity = server.enroll(tmp_path / "pc")
    server.stop()
    # Another deployment (its own CA) takes over the same address.
    impostor = ServerProcess(tmp_path / "impostor", f"sqlite:///{tmp_path / 'impostor.db'}")
    impostor.agent_port = server.agent_port
    impostor.start(pinned_ports=True)
    agent = AgentProcess(tmp_path / "pc").start()
    try:
        wait_for(lambda: "server certificate rejected" in agent.log(), 20, "pin refusal logged")
        assert "sekimori_agents_connected 0.0" in impostor.metrics()
        assert impostor.scalar("SELECT count(*) FROM devices") == 0
        assert identity.device_id not in impostor.log()
    finally:
        agent.stop()
        impostor.dispose()
