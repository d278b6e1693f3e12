"""Signed remote actions through a real server process over real TLS: keyring push,
delivery, results, collected files, a forged command, and two replicas.

The PC side is a protocol-level peer with the device's real certificate that checks
each command with ``verify_command`` — the function the agent runs — against the
keyring it pinned by fingerprint, like the agent does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from websockets.asyncio.client import ClientConnection, connect

from sekimori.agent.enroll import _make_key_and_csr
from sekimori.agent.identity import Identity, client_ssl_context
from sekimori.clock import now_us
from sekimori.protocol import Hello, Welcome, decode_server_message, encode_message
from sekimori.protocol.actions import (
    CollectFileParams,
    CommandBody,
    LockParams,
    RunScriptParams,
    command_digest,
    decode_command_body,
    encode_command_body,
    merkle_root,
)
from sekimori.protocol.messages import (
    ActionData,
    ActionRequest,
    ActionResult,
    Enroll,
    Enrolled,
    OperatorsUpdate,
)
from sekimori.protocol.signing import (
    Keyring,
    Refused,
    decode_keyring,
    decode_signed_keyring,
    keyring_fingerprint,
    verify_command,
)
from sekimori.server import actions as service
from sekimori.server.blobs import blob_store_for
from sekimori.server.store import actions as store
from sekimori.server.store.audit import search_audit
from tests.operators import Operator
from tests.processes import ServerProcess, wait_for


async def _recv(ws: ClientConnection, timeout: float = 10) -> Any:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(frame, bytes)
    return decode_server_message(frame, 1 << 23)


class ActionPeer:
    """An agent connection that speaks ``actions`` and verifies like the agent."""

    def __init__(self, server: ServerProcess, identity: Identity) -> None:
        self.server = server
        self.identity = identity
        self.keyring: Keyring | None = None
        self.ws: ClientConnection | None = None

    async def open(self, server: ServerProcess | None = None) -> None:
        target = server or self.server
        self.ws = await connect(
            f"{target.url}/v1/agent",
            ssl=client_ssl_context(self.identity.ca_path, self.identity),
            compression=None,
            max_size=1 << 23,
        )
        hello = Hello(
            agent_version="0.1.0",
            hostname="pc",
            os="linux",
            os_version="test",
            capabilities=["actions"],
        )
        await self.ws.send(encode_message(hello))
        assert isinstance(await _recv(self.ws), Welcome)

    async def next_of(self, kind: type[Any], timeout: float = 10) -> Any:
        assert self.ws is not None
        while True:
            message = await _recv(self.ws, timeout)
            if isinstance(message, kind):
                return message

    async def send(self, message: Any) -> None:
        assert self.ws is not None
        await self.ws.send(encode_message(message))

    def verify(self, request: ActionRequest) -> ActionResult:
        assert self.keyring is not None
        try:
            body, _ = verify_command(
                request.command,
                keyring=self.keyring,
                device_id=self.identity.device_id,
                proof=request.device_proof,
                now_us=now_us(),
            )
        except Refused as exc:
            nonce = decode_command_body(request.command.body).nonce
            return ActionResult(nonce=nonce, status="refused", reason=exc.reason)
        return ActionResult(nonce=body.nonce, status="done", output="ok", exit_code=0)


def _pin(peer: ActionPeer, update: OperatorsUpdate, fingerprint: str) -> None:
    first = update.chain[0]
    assert keyring_fingerprint(first.body) == fingerprint
    peer.keyring = decode_keyring(update.chain[-1].body)


def _target(server: ServerProcess, nonce: str, device_id: str) -> store.TargetRow:
    rows = [t for t in service.target_results(server.engine(), nonce) if t.device_id == device_id]
    return rows[0]


def _finished(server: ServerProcess, nonce: str, device_id: str) -> bool:
    return _target(server, nonce, device_id).state not in ("pending", "sent")


@pytest.fixture
def alice() -> Operator:
    return Operator("alice")


def test_commands_reach_the_agent_and_results_are_stored(
    server: ServerProcess, tmp_path: Path, alice: Operator
) -> None:
    engine = server.engine()
    bob = Operator("bob")
    fingerprint = service.init_keyring(engine, [alice.key, bob.key], 2, 10, "root")
    identity = server.enroll(tmp_path / "pc")
    device = identity.device_id
    peer = ActionPeer(server, identity)
    script = b"#!/bin/sh\necho hi\n"
    digest = service.add_library_item(
        engine, "script", name="hi", filename="hi.sh", content=script, by="root"
    )

    async def scenario() -> tuple[str, str, list[str], bytes, str]:
        # Enrollment hands out the current signed keyring (pinned by fingerprint).
        key_pem, csr_pem = _make_key_and_csr()
        del key_pem
        raw = await connect(
            f"{server.url}/v1/agent",
            ssl=client_ssl_context(server.data_dir / "pki" / "ca.crt"),
            compression=None,
        )
        await raw.send(
            encode_message(
                Enroll(
                    token=server.token(),
                    csr_pem=csr_pem,
                    hostname="pc2",
                    os="linux",
                    os_version="t",
                    agent_version="0.1.0",
                )
            )
        )
        enrolled = await _recv(raw)
        assert isinstance(enrolled, Enrolled)
        assert keyring_fingerprint(decode_signed_keyring(enrolled.operators).body) == fingerprint
        await raw.close()

        await peer.open()
        _pin(peer, await peer.next_of(OperatorsUpdate), fingerprint)

        # A signed lock: ready after one signature, delivered, verified, answered.
        lock = service.create_command(engine, LockParams(), [device], requested_by="root")
        view = service.command_view(engine, lock)
        service.add_command_signature(engine, lock, alice.sign(view.digest), "alice")
        request = await peer.next_of(ActionRequest, 5)
        result = peer.verify(request)
        assert result.status == "done", result.reason
        await peer.send(result)
        await asyncio.to_thread(wait_for, lambda: _finished(server, lock, device), 10, "stored")
        assert _target(server, lock, device).state == "done"

        # A script travels with its library bytes.
        run = service.create_command(
            engine, RunScriptParams(name="hi", sha256=digest), [device], requested_by="root"
        )
        view = service.command_view(engine, run)
        service.add_command_signature(engine, run, bob.sign(view.digest), "bob")
        request = await peer.next_of(ActionRequest, 5)
        assert request.attachment == script
        await peer.send(ActionResult(nonce=run, status="failed", exit_code=3, output="boom"))

        # A collected file arrives in chunks; a wrong digest is not kept.
        data = secrets.token_bytes(300_000)
        good = hashlib.sha256(data).hexdigest()
        collects = []
        for _ in range(2):
            nonce = service.create_command(
                engine, CollectFileParams(path="/etc/hostname"), [device], requested_by="root"
            )
            view = service.command_view(engine, nonce)
            service.add_command_signature(engine, nonce, alice.sign(view.digest), "alice")
            request = await peer.next_of(ActionRequest, 5)
            assert peer.verify(request).status == "done"
            collects.append(nonce)
        for nonce, claimed in zip(collects, (good, "0" * 64), strict=True):
            for offset in range(0, len(data), 100_000):
                chunk = data[offset : offset + 100_000]
                await peer.send(ActionData(nonce=nonce, offset=offset, chunk=chunk))
            await peer.send(
                ActionResult(nonce=nonce, status="done", data_size=len(data), data_sha256=claimed)
            )
        await asyncio.to_thread(
            wait_for,
            lambda: all(_finished(server, n, device) for n in (run, *collects)),
            10,
            "stored",
        )

        # A new keyring version is pushed within about a second.
        carol = Operator("carol")
        proposal = service.propose_keyring(engine, add=[carol.key], by="alice")
        pdigest = service.proposal_view(engine, proposal).digest
        service.add_proposal_signature(engine, proposal, alice.sign(pdigest), "alice")
        service.add_proposal_signature(engine, proposal, bob.sign(pdigest), "bob")
        update = await peer.next_of(OperatorsUpdate, 5)
        assert [decode_keyring(k.body).version for k in update.chain] == [1, 2]
        assert peer.ws is not None
        await peer.ws.close()
        return lock, run, collects, data, good

    lock, run, collects, data, good = asyncio.run(scenario())

    failed = _target(server, run, device)
    assert (failed.state, failed.exit_code, failed.output) == ("failed", 3, "boom")
    kept = _target(server, collects[0], device)
    assert kept.state == "done" and kept.data_sha256 == good and kept.data_size == len(data)
    blobs = blob_store_for(server.data_dir)
    assert service.collected_file(engine, blobs, collects[0], device, by="root") == data
    bad = _target(server, collects[1], device)
    assert bad.state == "failed" and "does not match its SHA-256" in bad.reason
    assert bad.data_sha256 is None
    logged = [(e.action, e.target) for e in search_audit(engine, target=lock, limit=20).entries]
    assert sorted(a for a, _ in logged) == [
        "action.create",
        "action.dispatch",
        "action.result",
        "action.sign",
    ]
    assert search_audit(engine, action="action.download", limit=5).entries


def test_a_command_forged_in_the_database_is_refused_by_the_agent(
    server: ServerProcess, tmp_path: Path, alice: Operator
) -> None:
    """Whoever writes to the database can make the server send anything; the PC
    refuses it because no operator signed it."""
    engine = server.engine()
    fingerprint = service.init_keyring(engine, [alice.key], 1, 10, "root")
    identity = server.enroll(tmp_path / "pc")
    device = identity.device_id
    peer = ActionPeer(server, identity)
    nonce = secrets.token_hex(16)
    issued = now_us()
    body = encode_command_body(
        CommandBody(
            deployment=store.deployment_id(engine),
            nonce=nonce,
            params=LockParams(),
            devices_root=merkle_root([device]),
            device_count=1,
            issued_at_us=issued,
            expires_at_us=issued + 300_000_000,
            requested_by="intruder",
        )
    )
    mallory = Operator("mallory")  # a key of her own, not in the pinned keyring
    with engine.begin() as conn:
        store.insert_command(
            conn,
            store.CommandRow(
                nonce=nonce,
                action="lock",
                body=body,
                digest=command_digest(body).hex(),
                device_count=1,
                requested_by="intruder",
                reason="",
                created_at_us=issued,
                expires_at_us=issued + 300_000_000,
                state="ready",
                signatures=store.encode_signatures([mallory.sign(command_digest(body))]),
                signers=["alice"],
                needed_signers=1,
                ready_at_us=issued,
            ),
            [device],
        )
        # A row the server cannot even decode fails once and blocks nothing.
        garbage = secrets.token_hex(16)
        store.insert_command(
            conn,
            store.CommandRow(
                nonce=garbage,
                action="lock",
                body=b"\x81\xa1x\x01",
                digest="0" * 64,
                device_count=1,
                requested_by="intruder",
                reason="",
                created_at_us=issued - 1,
                expires_at_us=issued + 300_000_000,
                state="ready",
                signatures=b"",
                signers=[],
                needed_signers=0,
                ready_at_us=issued - 1,
            ),
            [device],
        )

    async def scenario() -> None:
        await peer.open()
        _pin(peer, await peer.next_of(OperatorsUpdate), fingerprint)
        request = await peer.next_of(ActionRequest, 5)
        result = peer.verify(request)
        assert result.status == "refused"
        assert "not a pinned operator key" in result.reason
        await peer.send(result)
        await asyncio.to_thread(wait_for, lambda: _finished(server, nonce, device), 10, "stored")
        assert peer.ws is not None
        await peer.ws.close()

    asyncio.run(scenario())
    refused = _target(server, nonce, device)
    assert refused.state == "refused" and "not a pinned operator key" in refused.reason
    undecodable = _target(server, garbage, device)
    assert undecodable.state == "failed" and "cannot be sent" in undecodable.reason
    assert search_audit(engine, action="action.undeliverable", target=garbage).entries


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share one PostgreSQL database")
    first = ServerProcess(tmp_path / "a", database_url).start()
    second: ServerProcess | None = None
    try:
        # The second replica serves the same deployment: same CA and blob keys.
        (tmp_path / "b").mkdir()
        shutil.copytree(tmp_path / "a" / "pki", tmp_path / "b" / "pki")
        second = ServerProcess(tmp_path / "b", database_url).start()
        yield first, second
    finally:
        if second is not None:
            second.dispose()
        first.dispose()


def test_a_command_created_on_one_replica_reaches_an_agent_on_another(
    replicas: tuple[ServerProcess, ServerProcess], tmp_path: Path, alice: Operator
) -> None:
    a, b = replicas
    key = tmp_path / "alice.pem"
    made = b.cli("operator", "keygen", "--out", str(key), "--name", "alice")
    assert made.returncode == 0, made.stderr
    pub = key.with_suffix(".pub.pem")
    init = b.cli("operators", "init", "--key", str(pub), "--quorum", "1", "--fleet-threshold", "5")
    assert init.returncode == 0, init.stderr
    fingerprint = service.current_fingerprint(a.engine())
    assert fingerprint is not None and fingerprint in init.stdout
    identity = a.enroll(tmp_path / "pc")
    device = identity.device_id
    peer = ActionPeer(a, identity)

    async def scenario() -> str:
        await peer.open(a)
        _pin(peer, await peer.next_of(OperatorsUpdate), fingerprint)
        created = await asyncio.to_thread(
            b.cli, "action", "create", "lock", "--device", device, "--key", str(key), "--json"
        )
        assert created.returncode == 0, created.stderr
        nonce = str(json.loads(created.stdout)["nonce"])
        request = await peer.next_of(ActionRequest, 5)
        result = peer.verify(request)
        assert result.status == "done", result.reason
        await peer.send(result)
        await asyncio.to_thread(wait_for, lambda: _finished(b, nonce, device), 10, "stored")
        assert peer.ws is not None
        await peer.ws.close()
        return nonce

    nonce = asyncio.run(scenario())
    assert _target(b, nonce, device).state == "done"
    status = b.cli("action", "status", nonce)
    assert status.returncode == 0, status.stderr
    assert "done" in status.stdout
    with a.engine().connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM action_targets")).scalar_one()
    assert count == 1
