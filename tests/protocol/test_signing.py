"""Signed commands and operator keyrings, verified as the agent verifies them."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekimori.clock import now_us
from sekimori.protocol.actions import (
    KillProcessParams,
    MessageParams,
    RunScriptParams,
    SignedCommand,
    decode_command_body,
    decode_signed_command,
    encode_signed_command,
    merkle_proof,
    merkle_root,
    verify_merkle_proof,
)
from sekimori.protocol.signing import (
    Refused,
    decode_keyring,
    keyring_digest,
    verify_command,
    verify_keyring_step,
)
from tests.operators import Operator, Passkey, command, keyring, signed_keyring

KILL = KillProcessParams(pid=1234, name="sleep")
DEV = "11111111-1111-1111-1111-111111111111"


def _verify(cmd: SignedCommand, ring: bytes, devices: list[str], device: str = DEV) -> set[str]:
    _, ops = verify_command(
        cmd,
        keyring=decode_keyring(ring),
        device_id=device,
        proof=merkle_proof(devices, device) if device in devices else [],
        now_us=now_us(),
    )
    return ops


def test_a_command_signed_by_a_pinned_key_is_accepted() -> None:
    alice = Operator("alice")
    assert _verify(command(KILL, [DEV], [alice]), keyring([alice]), [DEV]) == {"alice"}


def test_a_passkey_assertion_is_accepted() -> None:
    pk = Passkey("alice")
    assert _verify(command(KILL, [DEV], [pk]), keyring([pk]), [DEV]) == {"alice"}


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: setattr(p, "origin", "https://evil.example"), "origin"),
        (lambda p: setattr(p, "rp_id", "evil.example"), "relying party"),
        (lambda p: setattr(p, "flags", 0x01), "verification"),
    ],
)
def test_a_passkey_assertion_out_of_context_is_refused(mutate: object, reason: str) -> None:
    pk = Passkey("alice")
    ring = keyring([pk])
    mutate(pk)  # type: ignore[operator]
    with pytest.raises(Refused, match=reason):
        _verify(command(KILL, [DEV], [pk]), ring, [DEV])


def test_a_passkey_assertion_for_another_challenge_is_refused() -> None:
    pk = Passkey("alice")
    other = command(KILL, [DEV], [pk])
    cmd = command(KILL, [DEV])
    cmd.signatures = other.signatures
    with pytest.raises(Refused, match="different challenge"):
        _verify(cmd, keyring([pk]), [DEV])


def test_an_unsigned_high_risk_command_is_refused_and_low_risk_is_not() -> None:
    ring = keyring([Operator("alice")])
    with pytest.raises(Refused, match="needs an operator signature"):
        _verify(command(KILL, [DEV]), ring, [DEV])
    assert _verify(command(MessageParams(text="hi"), [DEV]), ring, [DEV]) == set()


def test_a_key_not_in_the_keyring_is_refused() -> None:
    """A server whose operator keys were replaced signs with keys the agent never pinned."""
    ring = keyring([Operator("alice")])
    with pytest.raises(Refused, match="not a pinned operator key"):
        _verify(command(KILL, [DEV], [Operator("mallory")]), ring, [DEV])


def test_a_tampered_body_breaks_the_signature() -> None:
    alice = Operator("alice")
    cmd = command(KILL, [DEV], [alice])
    body = bytearray(cmd.body)
    body[body.index(b"sleep")] = ord("S")
    cmd.body = bytes(body)
    with pytest.raises(Refused, match="bad signature"):
        _verify(cmd, keyring([alice]), [DEV])


def test_a_command_for_other_devices_is_refused() -> None:
    alice = Operator("alice")
    others = ["a", "b", "c"]
    cmd = command(KILL, others, [alice])
    with pytest.raises(Refused, match="not for this device"):
        verify_command(
            cmd,
            keyring=decode_keyring(keyring([alice])),
            device_id=DEV,
            proof=merkle_proof(others, "a"),
            now_us=now_us(),
        )


def test_expired_future_and_too_long_commands_are_refused() -> None:
    alice = Operator("alice")
    ring = keyring([alice])
    old = now_us() - 3600 * 1_000_000
    with pytest.raises(Refused, match="expired"):
        _verify(command(KILL, [DEV], [alice], issued_at_us=old, lifetime_s=60), ring, [DEV])
    future = now_us() + 3600 * 1_000_000
    with pytest.raises(Refused, match="future"):
        _verify(command(KILL, [DEV], [alice], issued_at_us=future), ring, [DEV])
    with pytest.raises(Refused, match="longer"):
        _verify(command(KILL, [DEV], [alice], lifetime_s=7200), ring, [DEV])


def test_another_deployments_command_is_refused() -> None:
    alice = Operator("alice")
    with pytest.raises(Refused, match="another deployment"):
        _verify(command(KILL, [DEV], [alice], deployment="other"), keyring([alice]), [DEV])


def test_a_fleet_command_needs_two_different_operators() -> None:
    alice, bob, alice2 = Operator("alice"), Operator("bob"), Operator("alice")
    ring = keyring([alice, bob, alice2], fleet_threshold=3)
    fleet = [DEV, "a", "b", "c"]
    with pytest.raises(Refused, match="two operators"):
        _verify(command(KILL, fleet, [alice]), ring, fleet)
    with pytest.raises(Refused, match="two operators"):
        _verify(command(KILL, fleet, [alice, alice2]), ring, fleet)  # one person, two keys
    assert _verify(command(KILL, fleet, [alice, bob]), ring, fleet) == {"alice", "bob"}
    small = [DEV, "a", "b"]
    assert _verify(command(KILL, small, [alice]), ring, small) == {"alice"}


def test_keyring_rotation_needs_the_quorum_of_the_pinned_version() -> None:
    alice, bob, carol = Operator("alice"), Operator("bob"), Operator("carol")
    v1 = keyring([alice, bob], quorum=2)
    v2 = keyring([alice, bob, carol], version=2, previous=v1, quorum=2)
    current = decode_keyring(v1)
    with pytest.raises(Refused, match="1 operator"):
        verify_keyring_step(current, v1, signed_keyring(v2, [alice]))
    with pytest.raises(Refused, match="not a pinned"):
        verify_keyring_step(current, v1, signed_keyring(v2, [alice, carol]))
    assert verify_keyring_step(current, v1, signed_keyring(v2, [alice, bob])).version == 2
    forged = keyring([Operator("mallory")], version=2, previous=v1)
    with pytest.raises(Refused):
        verify_keyring_step(current, v1, signed_keyring(forged, [alice]))
    skip = keyring([alice, bob], version=3, previous=v2, quorum=2)
    with pytest.raises(Refused, match="does not follow"):
        verify_keyring_step(current, v1, signed_keyring(skip, [alice, bob]))
    fork = keyring([alice, bob], version=2, previous=keyring([alice]), quorum=2)
    with pytest.raises(Refused, match="previous_sha256"):
        verify_keyring_step(current, v1, signed_keyring(fork, [alice, bob]))


def test_a_keyring_with_a_key_id_that_lies_is_invalid() -> None:
    alice = Operator("alice")
    ring = msgspec.msgpack.decode(keyring([alice]))
    ring["keys"][0]["key_id"] = "0" * 64
    with pytest.raises(ValueError, match="does not match"):
        decode_keyring(msgspec.msgpack.encode(ring))
    ring = msgspec.msgpack.decode(keyring([alice]))
    ring["quorum"] = 2
    with pytest.raises(ValueError, match="quorum"):
        decode_keyring(msgspec.msgpack.encode(ring))


def test_the_keyring_digest_is_over_its_bytes() -> None:
    a = keyring([Operator("alice")])
    assert keyring_digest(a) != keyring_digest(a + b"\0")


def test_script_params_carry_the_digest() -> None:
    p = RunScriptParams(name="x", sha256="ab" * 32)
    alice = Operator("alice")
    body = decode_command_body(command(p, [DEV], [alice]).body)
    assert body.action == "run_script"
    assert isinstance(body.params, RunScriptParams) and body.params.sha256 == "ab" * 32


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_are_refused_with_a_clear_error(data: bytes) -> None:
    for decode in (decode_signed_command, decode_command_body, decode_keyring):
        try:
            decode(data)
        except ValueError as exc:
            assert str(exc)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.uuids().map(str), min_size=1, max_size=40, unique=True),
    st.data(),
)
def test_merkle_proofs_hold_for_members_only(devices: list[str], data: st.DataObject) -> None:
    root = merkle_root(devices)
    member = data.draw(st.sampled_from(devices))
    assert verify_merkle_proof(member, merkle_proof(devices, member), root)
    for other in devices:
        if other != member:
            assert not verify_merkle_proof(other, merkle_proof(devices, member), root)
    assert not verify_merkle_proof("not-a-member", merkle_proof(devices, member), root)


def test_a_mangled_signature_field_is_refused_at_decode() -> None:
    alice = Operator("alice")
    raw = msgspec.msgpack.decode(encode_signed_command(command(KILL, [DEV], [alice])))
    raw["signatures"][0]["kind"] = "rsa"
    with pytest.raises(ValueError, match="kind"):
        decode_signed_command(msgspec.msgpack.encode(raw))
