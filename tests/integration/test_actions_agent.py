"""Signed remote actions end to end: a real server process, a real agent process
(``sekimori agent run``) enrolled with ``--operators``, real TLS, real signatures.

The agent refuses what the issue says it must — a command inserted straight into the
server's database without a signature, one signed by a key the server substituted,
one replayed by the server (also after the agent restarted), one signed by an
operator key removed by a later keyring version — and runs what operators signed: a
real ``sleep`` dies, a restart is scheduled through the configured command (the one
mocked edge: a script that records its arguments instead of rebooting this machine).
Every refusal also reaches the server as an ``agent.action`` event; a result whose
connection died under the action is kept by the agent and sent once the server is
back; and the PC's own log verifies.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from sekimori.agent.actions.keyring import OPERATORS_FILE, load_keyring
from sekimori.agent.enroll import EnrollmentError, enroll
from sekimori.clock import now_us
from sekimori.protocol.actions import (
    ActionParams,
    CommandBody,
    KillProcessParams,
    LockParams,
    RestartParams,
    Signature,
    command_digest,
    encode_command_body,
    merkle_root,
)
from sekimori.server import actions as service
from sekimori.server.store import actions as store
from tests.operators import Operator
from tests.processes import AgentProcess, ServerProcess, wait_for

NOT_PINNED = "which is not a pinned operator key"


def _insert(
    server: ServerProcess,
    params: ActionParams,
    device: str,
    sign_with: list[Operator],
    nonce: str | None = None,
) -> str:
    """A command written straight into the database, as an intruder with database
    access (or a compromised server) would; signed by ``sign_with`` (maybe nobody)."""
    engine = server.engine()
    nonce = nonce or secrets.token_hex(16)
    issued = now_us()
    body = encode_command_body(
        CommandBody(
            deployment=store.deployment_id(engine),
            nonce=nonce,
            params=params,
            devices_root=merkle_root([device]),
            device_count=1,
            issued_at_us=issued,
            expires_at_us=issued + 300_000_000,
            requested_by="intruder",
        )
    )
    digest = command_digest(body)
    signatures: list[Signature] = [op.sign(digest) for op in sign_with]
    with engine.begin() as conn:
        store.insert_command(
            conn,
            store.CommandRow(
                nonce=nonce,
                action=type(params).__struct_config__.tag,  # type: ignore[arg-type]
                body=body,
                digest=digest.hex(),
                device_count=1,
                requested_by="intruder",
                reason="",
                created_at_us=issued,
                expires_at_us=issued + 300_000_000,
                state="ready",
                signatures=store.encode_signatures(signatures),
                signers=["alice"],
                needed_signers=1,
                ready_at_us=issued,
            ),
            [device],
        )
    return nonce


def _signed(server: ServerProcess, params: ActionParams, device: str, by: Operator) -> str:
    engine = server.engine()
    nonce = service.create_command(engine, params, [device], requested_by="admin")
    view = service.command_view(engine, nonce)
    service.add_command_signature(engine, nonce, by.sign(view.digest), by.name)
    return nonce


def _result(server: ServerProcess, nonce: str, device: str, timeout: float = 20) -> store.TargetRow:
    def finished() -> bool:
        rows = service.target_results(server.engine(), nonce)
        return any(r.device_id == device and r.state not in ("pending", "sent") for r in rows)

    wait_for(finished, timeout, f"the result of {nonce}")
    (row,) = [r for r in service.target_results(server.engine(), nonce) if r.device_id == device]
    return row


def test_the_agent_refuses_what_operators_did_not_sign_and_runs_what_they_did(
    server: ServerProcess, tmp_path: Path
) -> None:
    engine = server.engine()
    alice, bob = Operator("alice"), Operator("bob")
    fingerprint = service.init_keyring(engine, [alice.key, bob.key], 1, 10, "root")
    state = tmp_path / "pc"
    # A keyring with another fingerprint (another deployment, or keys the server
    # substituted): nothing is enrolled, as for a CA fingerprint mismatch.
    with pytest.raises(EnrollmentError, match="refusing to enroll"):
        enroll(
            state, server.url, server.token(), server.fingerprint, operators="SHA256:" + "ab" * 32
        )
    assert not (state / "identity.json").exists()
    assert not (state / OPERATORS_FILE).exists()
    identity = enroll(
        state, server.url, server.token(), server.fingerprint, operators=f"SHA256:{fingerprint}"
    )
    device = identity.device_id
    pinned = load_keyring(state)
    assert pinned is not None and pinned.fingerprint == fingerprint

    record = tmp_path / "shutdown-args"
    recorder = tmp_path / "record-shutdown"
    # A "slow" restart takes a few seconds: long enough to cut the connection under it.
    recorder.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\ncase "$3" in slow) sleep 3;; esac\n'
    )
    recorder.chmod(0o755)
    agent = AgentProcess(state)
    agent.env["SEKIMORI_AGENT__ACTIONS_SHUTDOWN_COMMAND"] = json.dumps([str(recorder)])
    agent.start()
    victim = subprocess.Popen(["sleep", "300"])
    try:
        # Signed by an operator: the process dies.
        kill = _signed(server, KillProcessParams(pid=victim.pid, name="sleep"), device, alice)
        done = _result(server, kill, device)
        assert done.state == "done", done.reason
        assert victim.wait(5) == -15

        # Inserted into the database without any signature.
        unsigned = _insert(server, LockParams(), device, [])
        row = _result(server, unsigned, device)
        assert (row.state, row.reason) == ("refused", "lock needs an operator signature")

        # The server's operator keys replaced by its own.
        mallory = Operator("alice")
        forged = _insert(server, LockParams(), device, [mallory])
        row = _result(server, forged, device)
        assert row.state == "refused" and NOT_PINNED in row.reason

        # Restart through the configured command.
        restart = _signed(
            server, RestartParams(delay_seconds=300, message="patch day"), device, bob
        )
        row = _result(server, restart, device)
        assert row.state == "done", row.reason
        assert record.read_text().splitlines() == ["-r", "+5", "patch day"]

        # The server replays the kill after the agent restarted.
        assert agent.stop() == 0
        agent.start()
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE action_targets SET state = 'pending' WHERE nonce = :n"), {"n": kill}
            )
        row = _result(server, kill, device)
        assert (row.state, row.reason) == ("refused", "replayed: this command was already received")

        # Bob's key is removed (signed by alice, quorum 1); the agent takes the new
        # version from the server's push and then refuses bob.
        proposal = service.propose_keyring(engine, remove=[bob.key.key_id], by="alice")
        digest = service.proposal_view(engine, proposal).digest
        service.add_proposal_signature(engine, proposal, alice.sign(digest), "alice")

        def pinned_version() -> int:
            current = load_keyring(state)
            return current.version if current else 0

        wait_for(lambda: pinned_version() == 2, 15, "keyring version 2 pinned by the agent")
        removed = _insert(server, LockParams(), device, [bob])
        row = _result(server, removed, device)
        assert row.state == "refused" and NOT_PINNED in row.reason

        # The fleet sees every refusal as an event, even without the results.
        def refusals() -> int:
            return server.scalar(
                "SELECT count(*) FROM events WHERE kind = 'agent.action' AND device_id = :d"
                " AND payload LIKE '%refused%'",
                d=device,
            )

        wait_for(lambda: refusals() >= 4, 15, "agent.action refusals stored")

        # The server goes away while an action runs: the result is kept by the agent
        # and sent once it is back.
        slow = _signed(server, RestartParams(delay_seconds=0, message="slow"), device, alice)
        wait_for(lambda: record.read_text().endswith("slow\n"), 20, "the slow restart to start")
        server.kill()
        wait_for(lambda: "kept for the next connection" in agent.log(), 15, "the result to be kept")
        server.start(pinned_ports=True)
        row = _result(server, slow, device, timeout=30)
        assert row.state == "done", row.reason
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        agent.stop()

    log = subprocess.run(
        [
            sys.executable,
            "-m",
            "sekimori",
            "agent",
            "actions-log",
            "--verify",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=agent.env,
    )
    assert log.returncode == 0, log.stderr
    assert "chain verified" in log.stdout
