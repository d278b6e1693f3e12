"""Operator keys and the verification of what they sign.

The **keyring** (``Keyring``) lists the operator keys of a deployment: Ed25519 keys
held in files by operators (``sekimori operator keygen`` / ``sekimori sign``) and
passkeys (WebAuthn credentials) registered in the console. The server never holds a
private key. An agent pins one keyring version at enrollment by its fingerprint (the
SHA-256 of its digest, printed in the enroll command). A later version is accepted
only if it follows the pinned one (``version + 1`` and ``previous_sha256``) and carries
signatures from ``quorum`` different operators of the version before it — so a server
whose keyring was replaced cannot make an agent trust new keys.

``verify_command`` is what the agent runs on every signed command: the signatures are
checked against the pinned keyring, the command must be for this deployment and this
device (Merkle proof), issued not in the future, unexpired and not longer-lived than
the keyring allows; commands for more than ``fleet_threshold`` devices need two
different operators. Nonces (replay) and the agent's local action policy are checked
by the agent after this.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Annotated, Final, Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from sekimori.protocol.actions import (
    LOW_RISK,
    CommandBody,
    ProofStep,
    Signature,
    SignedCommand,
    command_digest,
    decode_command_body,
    verify_merkle_proof,
)

__all__ = [
    "KEYRING_FORMAT",
    "Keyring",
    "OperatorKey",
    "Refused",
    "SignedKeyring",
    "decode_keyring",
    "decode_signed_keyring",
    "encode_keyring",
    "encode_signed_keyring",
    "key_id",
    "keyring_digest",
    "keyring_fingerprint",
    "sign_ed25519",
    "signers",
    "verify_command",
    "verify_keyring_step",
    "verify_signature",
]

KEYRING_FORMAT: Final = "sekimori-operators/1"
_KEYRING_DOMAIN: Final = b"sekimori/operators/v1\n"
# Tolerated difference between the signer's clock and the agent's.
CLOCK_SKEW_US: Final = 120 * 1_000_000

Hex64 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class Refused(Exception):
    """A command or keyring the agent must not accept; ``reason`` is short and safe
    to report to the server and the local audit log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OperatorKey(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One operator credential. ``public_key`` is a DER SubjectPublicKeyInfo (Ed25519,
    EC P-256 or RSA ≥ 2048); ``key_id`` is the SHA-256 of those bytes. A passkey also
    pins its relying-party id and the console origins it may sign from."""

    key_id: Hex64
    operator: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    label: Annotated[str, msgspec.Meta(max_length=200)] = ""
    kind: Literal["ed25519", "webauthn"]
    public_key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=2048)]
    rp_id: Annotated[str, msgspec.Meta(max_length=253)] = ""
    origins: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=300)]], msgspec.Meta(max_length=8)
    ] = msgspec.field(default_factory=list)


class Keyring(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    format: Literal["sekimori-operators/1"] = KEYRING_FORMAT
    deployment: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    # Hex digest of the version before ("" for version 1).
    previous_sha256: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")] = ""
    # Different operators whose signatures a change of this keyring needs.
    quorum: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    # Commands for more devices than this need two different operators.
    fleet_threshold: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 10
    # Longest lifetime (expires - issued) an agent accepts for a command.
    max_command_seconds: Annotated[int, msgspec.Meta(ge=30, le=86400)] = 3600
    keys: Annotated[list[OperatorKey], msgspec.Meta(min_length=1, max_length=64)]
    created_at_us: Annotated[int, msgspec.Meta(ge=0)] = 0


class SignedKeyring(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    body: Annotated[bytes, msgspec.Meta(min_length=1, max_length=256 * 1024)]
    signatures: Annotated[list[Signature], msgspec.Meta(max_length=32)] = msgspec.field(
        default_factory=list
    )


_encoder = msgspec.msgpack.Encoder()
_keyring_decoder = msgspec.msgpack.Decoder(Keyring)
_signed_keyring_decoder = msgspec.msgpack.Decoder(SignedKeyring)


def encode_keyring(keyring: Keyring) -> bytes:
    return _encoder.encode(keyring)


def decode_keyring(data: bytes) -> Keyring:
    """Strict decode plus the invariants msgspec cannot express; ``ValueError``."""
    try:
        keyring = _keyring_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid keyring: {exc}") from None
    seen: set[str] = set()
    for key in keyring.keys:
        if key.key_id in seen:
            raise ValueError(f"invalid keyring: key {key.key_id} listed twice")
        seen.add(key.key_id)
        if key.key_id != key_id(key.public_key):
            raise ValueError(f"invalid keyring: key {key.key_id} does not match its public key")
        _load_public_key(key)  # raises ValueError for a key of the wrong type
        if key.kind == "webauthn" and (not key.rp_id or not key.origins):
            raise ValueError(f"invalid keyring: passkey {key.key_id} needs rp_id and origins")
    operators = {k.operator for k in keyring.keys}
    if keyring.quorum > len(operators):
        raise ValueError(
            f"invalid keyring: quorum {keyring.quorum} exceeds its {len(operators)} operators"
        )
    if (keyring.version == 1) != (keyring.previous_sha256 == ""):
        raise ValueError("invalid keyring: only version 1 has no previous_sha256")
    return keyring


def encode_signed_keyring(signed: SignedKeyring) -> bytes:
    return _encoder.encode(signed)


def decode_signed_keyring(data: bytes) -> SignedKeyring:
    try:
        return _signed_keyring_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid signed keyring: {exc}") from None


def keyring_digest(body: bytes) -> bytes:
    return hashlib.sha256(_KEYRING_DOMAIN + body).digest()


def keyring_fingerprint(body: bytes) -> str:
    """What enrollment pins: hex SHA-256 of the keyring digest."""
    return hashlib.sha256(keyring_digest(body)).hexdigest()


def key_id(public_key_der: bytes) -> str:
    return hashlib.sha256(public_key_der).hexdigest()


PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _load_public_key(key: OperatorKey) -> PublicKey:
    try:
        loaded = serialization.load_der_public_key(key.public_key)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"key {key.key_id}: not a DER public key ({exc})") from None
    if isinstance(loaded, ed25519.Ed25519PublicKey):
        return loaded
    if key.kind == "webauthn" and isinstance(loaded, ec.EllipticCurvePublicKey):
        if not isinstance(loaded.curve, ec.SECP256R1):
            raise ValueError(f"key {key.key_id}: only P-256 passkeys are accepted")
        return loaded
    if key.kind == "webauthn" and isinstance(loaded, rsa.RSAPublicKey):
        if loaded.key_size < 2048:
            raise ValueError(f"key {key.key_id}: RSA keys under 2048 bits are refused")
        return loaded
    raise ValueError(f"key {key.key_id}: unsupported key type for {key.kind}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _verify_raw(public: PublicKey, signature: bytes, message: bytes) -> None:
    if isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(signature, message)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    else:
        public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def _check_webauthn(key: OperatorKey, sig: Signature, digest: bytes) -> bytes:
    """The bytes the authenticator signed, after checking the assertion's context."""
    try:
        client = json.loads(sig.client_data_json)
    except (ValueError, UnicodeDecodeError):
        raise Refused("passkey assertion: clientDataJSON is not JSON") from None
    if not isinstance(client, dict):
        raise Refused("passkey assertion: clientDataJSON is not an object")
    if client.get("type") != "webauthn.get":
        raise Refused("passkey assertion: not a webauthn.get assertion")
    if client.get("challenge") != _b64url(digest):
        raise Refused("passkey assertion: signed a different challenge")
    if client.get("origin") not in key.origins:
        raise Refused(f"passkey assertion: origin {client.get('origin')!r} is not pinned")
    data = sig.authenticator_data
    if len(data) < 37:
        raise Refused("passkey assertion: authenticator data too short")
    if data[:32] != hashlib.sha256(key.rp_id.encode()).digest():
        raise Refused("passkey assertion: for another relying party")
    flags = data[32]
    if not flags & 0x01 or not flags & 0x04:
        raise Refused("passkey assertion: user presence and verification are required")
    return data + hashlib.sha256(sig.client_data_json).digest()


def verify_signature(key: OperatorKey, sig: Signature, digest: bytes) -> None:
    """Raise ``Refused`` unless ``sig`` is ``key``'s valid signature of ``digest``."""
    if sig.kind != key.kind:
        raise Refused(f"signature kind {sig.kind} does not match key {key.key_id[:12]}")
    try:
        public = _load_public_key(key)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    message = digest if sig.kind == "ed25519" else _check_webauthn(key, sig, digest)
    try:
        _verify_raw(public, sig.signature, message)
    except InvalidSignature:
        raise Refused(f"bad signature by key {key.key_id[:12]}") from None


def signers(keyring: Keyring, signatures: Sequence[Signature], digest: bytes) -> set[str]:
    """The operators whose signatures are valid. Any signature that is not valid, or
    by a key not in the keyring, refuses the whole thing (nothing is silently
    ignored); a key that signs twice counts once."""
    keys = {k.key_id: k for k in keyring.keys}
    operators: set[str] = set()
    seen: set[str] = set()
    for sig in signatures:
        key = keys.get(sig.key_id)
        if key is None:
            raise Refused(f"signed by key {sig.key_id[:12]}, which is not a pinned operator key")
        if sig.key_id in seen:
            continue
        verify_signature(key, sig, digest)
        seen.add(sig.key_id)
        operators.add(key.operator)
    return operators


def verify_keyring_step(current: Keyring, current_body: bytes, nxt: SignedKeyring) -> Keyring:
    """Accept ``nxt`` as the successor of the pinned ``current`` keyring, or raise
    ``Refused``."""
    try:
        new = decode_keyring(nxt.body)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    if new.deployment != current.deployment:
        raise Refused("keyring of another deployment")
    if new.version != current.version + 1:
        raise Refused(f"keyring version {new.version} does not follow {current.version}")
    if new.previous_sha256 != keyring_digest(current_body).hex():
        raise Refused("keyring does not follow the pinned one (previous_sha256)")
    operators = signers(current, nxt.signatures, keyring_digest(nxt.body))
    if len(operators) < current.quorum:
        raise Refused(
            f"keyring change signed by {len(operators)} operator(s); {current.quorum} needed"
        )
    return new


def verify_command(
    command: SignedCommand,
    *,
    keyring: Keyring,
    device_id: str,
    proof: Sequence[ProofStep],
    now_us: int,
) -> tuple[CommandBody, set[str]]:
    """Everything about a command that does not need the agent's own state: returns
    the decoded body and the operators who signed it, or raises ``Refused``."""
    try:
        body = decode_command_body(command.body)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    digest = command_digest(command.body)
    operators = signers(keyring, command.signatures, digest)
    if body.deployment != keyring.deployment:
        raise Refused("command for another deployment")
    if not verify_merkle_proof(device_id, proof, body.devices_root):
        raise Refused("command is not for this device")
    if body.issued_at_us > now_us + CLOCK_SKEW_US:
        raise Refused("command issued in the future")
    if body.expires_at_us <= now_us:
        raise Refused("command expired")
    if body.expires_at_us - body.issued_at_us > keyring.max_command_seconds * 1_000_000:
        raise Refused("command lives longer than the keyring allows")
    if body.action not in LOW_RISK and not operators:
        raise Refused(f"{body.action} needs an operator signature")
    if (
        body.action not in LOW_RISK
        and body.device_count > keyring.fleet_threshold
        and len(operators) < 2
    ):
        raise Refused(
            f"command for {body.device_count} devices needs two operators "
            f"(more than {keyring.fleet_threshold})"
        )
    return body, operators


def sign_ed25519(private_key: ed25519.Ed25519PrivateKey, digest: bytes) -> Signature:
    public = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Signature(key_id=key_id(public), kind="ed25519", signature=private_key.sign(digest))
