"""The actions service on both backends: keyrings and proposals, commands and their
signatures (real Ed25519 and passkey signatures), library, expiry, targets, audit."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.actions import (
    LockParams,
    MessageParams,
    RunScriptParams,
    command_digest,
    decode_command_body,
)
from sekimori.protocol.signing import (
    decode_keyring,
    keyring_digest,
    keyring_fingerprint,
    verify_keyring_step,
)
from sekimori.server import actions as service
from sekimori.server.actions import ActionError
from sekimori.server.store import actions as store
from sekimori.server.store import schema
from sekimori.server.store.audit import search_audit, verify_chain
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.schema import devices
from tests.operators import Operator, Passkey

DEVICES = [f"00000000-0000-4000-8000-{i:012d}" for i in range(5)]


def _add_devices(engine: sa.Engine, ids: list[str]) -> None:
    with engine.begin() as conn:
        group_id = ensure_group(conn, "default")
        for device_id in ids:
            conn.execute(
                sa.insert(devices).values(
                    id=device_id,
                    hostname="pc",
                    os="linux",
                    os_version="x",
                    agent_version="0.1.0",
                    group_id=group_id,
                    cert_serial="1",
                    enrolled_us=now_us(),
                    connected=False,
                    acked_seq=0,
                    outbox_events=0,
                    dropped_total=0,
                )
            )


@pytest.fixture
def alice() -> Operator:
    return Operator("alice")


@pytest.fixture
def bob() -> Operator:
    return Operator("bob")


def test_deployment_id_is_created_once(engine: sa.Engine) -> None:
    first = store.deployment_id(engine)
    assert len(first) == 32
    assert store.deployment_id(engine) == first


def test_keyring_init_proposal_quorum_and_publication(
    engine: sa.Engine, alice: Operator, bob: Operator
) -> None:
    carol, dave = Operator("carol"), Passkey("dave")
    fingerprint = service.init_keyring(engine, [alice.key, bob.key], 2, 3, "root")
    found = service.current_keyring(engine)
    assert found is not None
    keyring, body, signed = found
    assert keyring.version == 1 and keyring.quorum == 2 and keyring.fleet_threshold == 3
    assert keyring.deployment == store.deployment_id(engine)
    assert fingerprint == keyring_fingerprint(body) == service.current_fingerprint(engine)
    assert signed.signatures == []
    with pytest.raises(ActionError, match="exists already"):
        service.init_keyring(engine, [carol.key], 1, 3, "root")
    assert {c.state for c in service.credentials_of(engine, None)} == {"active"}

    # A passkey registered in the console is pending until a keyring lists it.
    service.add_credential(engine, dave.key, b"cred-id", "dave")
    with pytest.raises(ActionError, match="registered already"):
        service.add_credential(engine, dave.key, b"cred-id", "dave")
    assert [c.state for c in service.credentials_of(engine, "dave")] == ["pending"]

    proposal = service.propose_keyring(
        engine, add=[carol.key, dave.key], remove=[bob.key.key_id], by="alice"
    )
    view = service.proposal_view(engine, proposal)
    assert view.keyring.version == 2 and view.needed == 2
    # Signatures by keys outside the current keyring, or bad ones, are refused early.
    with pytest.raises(ActionError, match="not in keyring version 1"):
        service.add_proposal_signature(engine, proposal, carol.sign(view.digest), "carol")
    with pytest.raises(ActionError, match="bad signature"):
        forged = alice.sign(b"x" * 32)
        service.add_proposal_signature(engine, proposal, forged, "alice")
    assert (
        service.add_proposal_signature(engine, proposal, alice.sign(view.digest), "alice").state
        == "open"
    )
    with pytest.raises(ActionError, match="signed this proposal already"):
        service.add_proposal_signature(engine, proposal, alice.sign(view.digest), "alice")
    assert service.current_keyring(engine)[0].version == 1  # type: ignore[index]
    done = service.add_proposal_signature(engine, proposal, bob.sign(view.digest), "bob")
    assert done.state == "published" and done.signers == {"alice", "bob"}

    new, new_body, _ = service.current_keyring(engine)  # type: ignore[misc]
    assert new.version == 2
    assert {k.operator for k in new.keys} == {"alice", "carol", "dave"}
    states = {c.operator: c.state for c in service.credentials_of(engine, None)}
    assert states == {"alice": "active", "bob": "removed", "carol": "active", "dave": "active"}
    # The chain is what an agent pinned at version 1 accepts, step by step.
    chain = service.keyring_chain(engine)
    assert [decode_keyring(s.body).version for s in chain] == [1, 2]
    assert verify_keyring_step(keyring, body, chain[1]).version == 2
    assert new_body == chain[1].body
    assert keyring_digest(body).hex() == new.previous_sha256
    # A proposal made against version 1 is stale now.
    stale = service.propose_keyring(engine, quorum=1, by="alice")
    assert service.proposal_view(engine, stale).version == 3
    actions_logged = {e.action for e in search_audit(engine, limit=50).entries}
    assert {"operators.init", "operators.propose", "operators.sign", "operators.publish"} <= (
        actions_logged
    )


def test_invalid_keyrings_are_refused(engine: sa.Engine, alice: Operator) -> None:
    with pytest.raises(ActionError, match="quorum 2 exceeds"):
        service.init_keyring(engine, [alice.key], 2, 3, "root")
    with pytest.raises(ActionError, match="no keyring yet"):
        service.propose_keyring(engine, quorum=1, by="root")
    assert service.current_keyring(engine) is None


def test_commands_need_signatures_by_different_operators(
    engine: sa.Engine, alice: Operator, bob: Operator
) -> None:
    _add_devices(engine, DEVICES)
    alice2 = Operator("alice")  # a second key of the same operator
    service.init_keyring(engine, [alice.key, alice2.key, bob.key], 1, 3, "root")

    # Low risk: ready at once, no signature needed.
    low = service.create_command(
        engine, MessageParams(text="hi"), DEVICES, requested_by="root", reason="test"
    )
    assert service.command_view(engine, low).state == "ready"

    # One device: one operator.
    one = service.create_command(engine, LockParams(), DEVICES[:1], requested_by="root")
    view = service.command_view(engine, one)
    assert view.state == "awaiting_signatures" and view.needed_signers == 1
    body = decode_command_body(view.body_bytes)
    assert body.device_count == 1 and body.expires_at_us - body.issued_at_us == 600_000_000
    assert view.digest == command_digest(view.body_bytes)
    stranger = Operator("mallory")
    with pytest.raises(ActionError, match="not in the current operator keyring"):
        service.add_command_signature(engine, one, stranger.sign(view.digest), "mallory")
    with pytest.raises(ActionError, match="signature refused: bad signature"):
        service.add_command_signature(engine, one, alice.sign(b"y" * 32), "alice")
    assert service.command_view(engine, one).signatures == []
    assert service.add_command_signature(engine, one, alice.sign(view.digest), "alice") == "ready"
    with pytest.raises(ActionError, match="is ready"):
        service.add_command_signature(engine, one, bob.sign(view.digest), "bob")

    # Above the fleet threshold (3): two different operators.
    fleet = service.create_command(engine, LockParams(), DEVICES, requested_by="root")
    view = service.command_view(engine, fleet)
    assert view.needed_signers == 2
    assert service.add_command_signature(engine, fleet, alice.sign(view.digest), "a") == (
        "awaiting_signatures"
    )
    # The same operator's second key does not count as a second operator.
    assert service.add_command_signature(engine, fleet, alice2.sign(view.digest), "a") == (
        "awaiting_signatures"
    )
    assert service.add_command_signature(engine, fleet, bob.sign(view.digest), "b") == "ready"
    assert service.command_view(engine, fleet).signers == ["alice", "bob"]

    audit = search_audit(engine, target=fleet, limit=50).entries
    assert sorted(e.action for e in audit) == ["action.create"] + ["action.sign"] * 3
    assert verify_chain(engine).intact


def test_command_input_is_checked(engine: sa.Engine, alice: Operator) -> None:
    _add_devices(engine, DEVICES[:1])
    with pytest.raises(ActionError, match="no operator keyring"):
        service.create_command(engine, LockParams(), DEVICES[:1], requested_by="root")
    service.init_keyring(engine, [alice.key], 1, 3, "root", max_command_seconds=300)
    with pytest.raises(ActionError, match="at least one device"):
        service.create_command(engine, LockParams(), [], requested_by="root")
    with pytest.raises(ActionError, match="unknown device"):
        service.create_command(engine, LockParams(), DEVICES[:2], requested_by="root")
    with pytest.raises(ActionError, match="lifetime must be 30-300"):
        service.create_command(
            engine, LockParams(), DEVICES[:1], requested_by="root", lifetime_s=301
        )
    # The default lifetime is capped by the keyring.
    nonce = service.create_command(engine, LockParams(), DEVICES[:1], requested_by="root")
    body = service.command_view(engine, nonce).body
    assert body.expires_at_us - body.issued_at_us == 300_000_000
    with pytest.raises(ActionError, match="requested_by"):
        service.create_command(engine, LockParams(), DEVICES[:1], requested_by="")


def test_library_items_are_named_by_digest(engine: sa.Engine, alice: Operator) -> None:
    _add_devices(engine, DEVICES[:1])
    service.init_keyring(engine, [alice.key], 1, 3, "root")
    script = b"#!/bin/sh\necho hello\n"
    digest = hashlib.sha256(script).hexdigest()
    params = RunScriptParams(name="hello", sha256=digest)
    with pytest.raises(ActionError, match="no script with SHA-256"):
        service.create_command(engine, params, DEVICES[:1], requested_by="root")
    assert (
        service.add_library_item(
            engine, "script", name="hello", filename="hello.sh", content=script, by="root"
        )
        == digest
    )
    # Same bytes again: one item.
    service.add_library_item(
        engine, "script", name="again", filename="hello.sh", content=script, by="root"
    )
    assert [(i.name, i.size) for i in service.list_library(engine)] == [("hello", len(script))]
    assert service.library_content(engine, digest) == script
    service.create_command(engine, params, DEVICES[:1], requested_by="root")
    with pytest.raises(ActionError, match=r"\.deb"):
        service.add_library_item(
            engine, "package", name="p", filename="p.tar", content=b"x", by="root"
        )
    with pytest.raises(ActionError, match="empty"):
        service.add_library_item(
            engine, "script", name="e", filename="e.sh", content=b"", by="root"
        )


def test_targets_route_once_and_expire(engine: sa.Engine, alice: Operator) -> None:
    _add_devices(engine, DEVICES[:3])
    service.init_keyring(engine, [alice.key], 1, 3, "root")
    ready = service.create_command(engine, MessageParams(text="x"), DEVICES[:2], requested_by="r")
    waiting = service.create_command(engine, LockParams(), DEVICES[2:3], requested_by="r")
    now = now_us()
    with engine.begin() as conn:
        found = store.ready_targets(conn, DEVICES, now)
        assert sorted(found) == [(ready, DEVICES[0]), (ready, DEVICES[1])]
        assert store.ready_targets(conn, DEVICES[2:], now) == []
        assert store.claim_target(conn, ready, DEVICES[0], now)
        assert not store.claim_target(conn, ready, DEVICES[0], now)  # claimed once
        assert store.record_result(
            conn,
            ready,
            DEVICES[0],
            state="done",
            reason="",
            exit_code=0,
            output="ok",
            data_sha256=None,
            data_size=None,
            now_us=now,
        )
        # A second answer, or one for a target never sent, changes nothing.
        for device_id in (DEVICES[0], DEVICES[1]):
            assert not store.record_result(
                conn,
                ready,
                device_id,
                state="failed",
                reason="",
                exit_code=1,
                output="",
                data_sha256=None,
                data_size=None,
                now_us=now,
            )
        assert store.expire_commands(conn, now) == []
        late = now + 601_000_000
        assert sorted(store.expire_commands(conn, late)) == sorted([(ready, 1), (waiting, 1)])
        assert store.expire_commands(conn, late) == []
    states = {t.device_id: t.state for t in service.target_results(engine, ready)}
    assert states == {DEVICES[0]: "done", DEVICES[1]: "expired"}
    assert service.command_view(engine, waiting).state == "expired"


def test_results_are_recorded_once_per_sent_target(engine: sa.Engine) -> None:
    _add_devices(engine, DEVICES[:3])
    nonce = service.create_command(engine, MessageParams(text="x"), DEVICES[:3], requested_by="r")

    def answer(device_id: str, state: str) -> store.Result:
        return store.Result(
            nonce=nonce,
            device_id=device_id,
            state=state,
            reason="",
            exit_code=None,
            output="",
            data_sha256=None,
            data_size=None,
        )

    now = now_us()
    with engine.begin() as conn:
        assert sorted(store.claim_targets(conn, nonce, DEVICES[:2], now)) == DEVICES[:2]
        assert store.claim_targets(conn, nonce, DEVICES[:3], now) == DEVICES[2:3]
        # A second answer, in the same batch or a later one, is ignored.
        recorded = store.record_results(
            conn,
            [
                answer(DEVICES[0], "done"),
                answer(DEVICES[0], "failed"),
                answer(DEVICES[1], "refused"),
                answer(DEVICES[1], "done"),
            ],
            now,
        )
        assert sorted((r.device_id, r.state) for r in recorded) == [
            (DEVICES[0], "done"),
            (DEVICES[1], "refused"),
        ]
        assert store.record_results(conn, [answer(DEVICES[0], "failed")], now) == []
    states = {t.device_id: t.state for t in service.target_results(engine, nonce)}
    assert states == {DEVICES[0]: "done", DEVICES[1]: "refused", DEVICES[2]: "sent"}


def test_the_enroll_command_pins_the_operator_keyring() -> None:
    from sekimori.server.agent_command import enroll_command

    plain = enroll_command("wss://h:1", "sek_abc", "ab" * 32)
    assert "--operators" not in plain
    assert enroll_command("wss://h:1", "sek_abc", "ab" * 32, "cd" * 32) == (
        plain + " --operators SHA256:" + "cd" * 32
    )


def test_the_expiry_job_expires_undelivered_targets_and_audits(
    engine: sa.Engine, alice: Operator
) -> None:
    _add_devices(engine, DEVICES[:2])
    service.init_keyring(engine, [alice.key], 1, 3, "root")
    waiting = service.create_command(engine, LockParams(), DEVICES[:2], requested_by="r")
    fresh = service.create_command(engine, LockParams(), DEVICES[:1], requested_by="r")
    with engine.begin() as conn:
        conn.execute(
            sa.update(schema.actions)
            .where(schema.actions.c.nonce == waiting)
            .values(expires_at_us=now_us() - 1)
        )
    assert service.expire_due(engine) == [(waiting, 2)]
    assert service.expire_due(engine) == []
    assert service.command_view(engine, waiting).state == "expired"
    assert service.command_view(engine, fresh).state == "awaiting_signatures"
    assert {t.state for t in service.target_results(engine, waiting)} == {"expired"}
    with pytest.raises(ActionError, match="is expired"):
        view = service.command_view(engine, waiting)
        service.add_command_signature(engine, waiting, alice.sign(view.digest), "alice")
    (entry,) = search_audit(engine, action="action.expire", limit=5).entries
    assert entry.target == waiting and entry.detail_dict() == {"undelivered": 2}
