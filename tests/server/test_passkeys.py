"""Passkey registration parsing for each algorithm the console offers (EdDSA, ES256,
RS256): an authenticator's answer is built here byte for byte ("none" attestation,
CBOR/COSE as the spec lays them out — Chromium's virtual authenticator only makes
ES256, tested in tests/console/test_browser_actions.py), verified by py_webauthn, and
the stored key then verifies an assertion with the agent's own ``verify_signature``."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from sekimori.protocol.signing import Refused, verify_signature
from sekimori.server.actions.passkeys import (
    Assertion,
    ChallengeStore,
    PasskeyError,
    RelyingParty,
    assertion_signature,
    b64url,
    b64url_decode,
    relying_party,
    verify_registration,
)

RP = RelyingParty(rp_id="console.example", origin="https://console.example")

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass
class Authenticator:
    alg: str
    private: PrivateKey
    credential_id: bytes

    def cose(self) -> bytes:
        public = self.private.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: raw})
        if isinstance(public, ec.EllipticCurvePublicKey):
            numbers = public.public_numbers()
            size = (public.curve.key_size + 7) // 8
            alg, crv = (-7, 1) if size == 32 else (-35, 2)  # ES256 P-256, ES384 P-384
            return cbor2.dumps(
                {
                    1: 2,
                    3: alg,
                    -1: crv,
                    -2: numbers.x.to_bytes(size, "big"),
                    -3: numbers.y.to_bytes(size, "big"),
                }
            )
        rsa_numbers = public.public_numbers()
        n = rsa_numbers.n.to_bytes((rsa_numbers.n.bit_length() + 7) // 8, "big")
        return cbor2.dumps({1: 3, 3: -257, -1: n, -2: rsa_numbers.e.to_bytes(3, "big")})

    def register(self, challenge: bytes, rp: RelyingParty = RP, flags: int = 0x45) -> str:
        auth = (
            hashlib.sha256(rp.rp_id.encode()).digest()
            + bytes([flags])
            + b"\0\0\0\0"
            + bytes(16)
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + self.cose()
        )
        client = json.dumps(
            {"type": "webauthn.create", "challenge": b64url(challenge), "origin": rp.origin}
        ).encode()
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth})
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client),
                    "attestationObject": b64url(attestation),
                },
                "clientExtensionResults": {},
            }
        )

    def assert_(self, digest: bytes, rp: RelyingParty = RP) -> Assertion:
        client = json.dumps(
            {"type": "webauthn.get", "challenge": b64url(digest), "origin": rp.origin}
        ).encode()
        auth = hashlib.sha256(rp.rp_id.encode()).digest() + bytes([0x05]) + b"\0\0\0\1"
        message = auth + hashlib.sha256(client).digest()
        if isinstance(self.private, ed25519.Ed25519PrivateKey):
            sig = self.private.sign(message)
        elif isinstance(self.private, ec.EllipticCurvePrivateKey):
            sig = self.private.sign(message, ec.ECDSA(hashes.SHA256()))
        else:
            sig = self.private.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return Assertion(
            credential_id=b64url(self.credential_id),
            authenticator_data=b64url(auth),
            client_data_json=b64url(client),
            signature=b64url(sig),
        )


def _authenticator(alg: str) -> Authenticator:
    private: PrivateKey
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Authenticator(alg, private, secrets.token_bytes(16))


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_each_algorithm_registers_and_its_key_verifies_as_the_agent_does(alg: str) -> None:
    authenticator = _authenticator(alg)
    challenge = secrets.token_bytes(32)
    registered = verify_registration(
        authenticator.register(challenge),
        rp=RP,
        challenge=challenge,
        operator="alice",
        label="key",
    )
    assert registered.credential_id == authenticator.credential_id
    key = registered.key
    assert (key.kind, key.rp_id, key.origins, key.operator) == (
        "webauthn",
        RP.rp_id,
        [RP.origin],
        "alice",
    )
    digest = hashlib.sha256(b"a command").digest()
    signature = assertion_signature(
        authenticator.assert_(digest), {authenticator.credential_id: key.key_id}
    )
    verify_signature(key, signature, digest)  # the agent's check
    with pytest.raises(Refused):
        verify_signature(key, signature, hashlib.sha256(b"another").digest())


def test_registrations_that_must_be_refused() -> None:
    authenticator = _authenticator("ES256")
    challenge = secrets.token_bytes(32)
    other_site = RelyingParty(rp_id="evil.example", origin="https://evil.example")
    cases = {
        "another challenge": authenticator.register(secrets.token_bytes(32)),
        "another site": authenticator.register(challenge, rp=other_site),
        "no user verification": authenticator.register(challenge, flags=0x41),
        "not JSON": "{",
    }
    for what, credential in cases.items():
        with pytest.raises(PasskeyError):
            verify_registration(credential, rp=RP, challenge=challenge, operator="a", label="")
            pytest.fail(what)
    small = Authenticator("ES256", ec.generate_private_key(ec.SECP384R1()), b"id")
    with pytest.raises(PasskeyError):
        verify_registration(
            small.register(challenge), rp=RP, challenge=challenge, operator="a", label=""
        )


def test_an_assertion_of_another_credential_is_refused() -> None:
    authenticator = _authenticator("ES256")
    assertion = authenticator.assert_(bytes(32))
    with pytest.raises(PasskeyError, match="not one of your active"):
        assertion_signature(assertion, {b"other": "0" * 64})


def test_challenges_are_single_use_and_per_session() -> None:
    store = ChallengeStore(ttl_s=60)
    first = store.issue("session-a")
    assert store.take("session-b") is None
    assert store.take("session-a") == first
    assert store.take("session-a") is None
    expired = ChallengeStore(ttl_s=-1)
    expired.issue("s")
    assert expired.take("s") is None


def test_the_relying_party_comes_from_the_configured_url_first() -> None:
    assert relying_party("", "http://localhost:8080/") == RelyingParty(
        "localhost", "http://localhost:8080"
    )
    assert relying_party("https://console.example/x", "http://127.0.0.1:8080/") == RP
    assert relying_party("", "http://localhost:8080/").usable
    assert not relying_party("", "http://127.0.0.1:8080/").usable
    assert not relying_party("", "http://pc.example:8080/").usable  # not a secure context
    with pytest.raises(PasskeyError):
        relying_party("", "ftp://x")


@given(st.binary(max_size=300))
def test_base64url_round_trips(data: bytes) -> None:
    assert b64url_decode(b64url(data)) == data
    assert "=" not in b64url(data)


def test_base64url_refuses_garbage() -> None:
    with pytest.raises(PasskeyError):
        b64url_decode("a")
