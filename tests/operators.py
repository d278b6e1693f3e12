"""Operator keys, keyrings and signed commands for tests: real keys, real signatures.

``Operator`` holds an Ed25519 key (as ``sekimori operator keygen`` makes) and
``Passkey`` a P-256 credential that answers WebAuthn ``get`` like an authenticator
does (authenticator data, clientDataJSON, ECDSA over both) — for tests below the
browser; the console's own tests use Chromium's virtual authenticator.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sekimori.clock import now_us
from sekimori.protocol.actions import (
    ActionParams,
    CommandBody,
    Signature,
    SignedCommand,
    command_digest,
    encode_command_body,
    merkle_root,
)
from sekimori.protocol.signing import (
    Keyring,
    OperatorKey,
    SignedKeyring,
    encode_keyring,
    key_id,
    keyring_digest,
    sign_ed25519,
)

DEPLOYMENT = "test-deployment"
RP_ID = "console.example"
ORIGIN = "https://console.example"


def _spki(public: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Operator:
    name: str
    private: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    @property
    def key(self) -> OperatorKey:
        der = _spki(self.private.public_key())
        return OperatorKey(key_id=key_id(der), operator=self.name, kind="ed25519", public_key=der)

    def sign(self, digest: bytes) -> Signature:
        return sign_ed25519(self.private, digest)


@dataclass
class Passkey:
    name: str
    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    rp_id: str = RP_ID
    origin: str = ORIGIN
    flags: int = 0x05  # user present + user verified

    @property
    def key(self) -> OperatorKey:
        der = _spki(self.private.public_key())
        return OperatorKey(
            key_id=key_id(der),
            operator=self.name,
            kind="webauthn",
            public_key=der,
            rp_id=RP_ID,
            origins=[ORIGIN],
        )

    def sign(self, digest: bytes) -> Signature:
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        client = json.dumps(
            {"type": "webauthn.get", "challenge": challenge, "origin": self.origin}
        ).encode()
        auth = hashlib.sha256(self.rp_id.encode()).digest() + bytes([self.flags]) + b"\0\0\0\1"
        sig = self.private.sign(auth + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        return Signature(
            key_id=self.key.key_id,
            kind="webauthn",
            signature=sig,
            authenticator_data=auth,
            client_data_json=client,
        )


Signer = Operator | Passkey


def keyring(
    signers: Sequence[Signer],
    *,
    version: int = 1,
    previous: bytes = b"",
    quorum: int = 1,
    fleet_threshold: int = 10,
    deployment: str = DEPLOYMENT,
) -> bytes:
    """An encoded keyring body (version 1 unless ``previous`` body is given)."""
    return encode_keyring(
        Keyring(
            deployment=deployment,
            version=version,
            previous_sha256=keyring_digest(previous).hex() if previous else "",
            quorum=quorum,
            fleet_threshold=fleet_threshold,
            keys=[s.key for s in signers],
        )
    )


def signed_keyring(body: bytes, by: Sequence[Signer] = ()) -> SignedKeyring:
    digest = keyring_digest(body)
    return SignedKeyring(body=body, signatures=[s.sign(digest) for s in by])


def command(
    params: ActionParams,
    devices: Sequence[str],
    by: Sequence[Signer] = (),
    *,
    lifetime_s: int = 300,
    issued_at_us: int | None = None,
    deployment: str = DEPLOYMENT,
    nonce: str | None = None,
) -> SignedCommand:
    issued = now_us() if issued_at_us is None else issued_at_us
    body = encode_command_body(
        CommandBody(
            deployment=deployment,
            nonce=nonce or secrets.token_hex(16),
            params=params,
            devices_root=merkle_root(devices),
            device_count=len(set(devices)),
            issued_at_us=issued,
            expires_at_us=issued + lifetime_s * 1_000_000,
            requested_by="tester",
        )
    )
    digest = command_digest(body)
    return SignedCommand(body=body, signatures=[s.sign(digest) for s in by])
