"""Operators' passkeys (WebAuthn) in the console: registration, and assertions turned
into ``Signature``s.

The browser makes the key pair inside the authenticator (``navigator.credentials.create``)
and signs with it (``navigator.credentials.get``); the server only ever sees public keys
and signatures. Registration is verified here with py_webauthn (challenge, origin,
relying-party id, user presence and verification, algorithm), and the credential's
COSE public key is converted to the DER SubjectPublicKeyInfo that an ``OperatorKey``
carries — the form the agent verifies with. The key enters no keyring here: it is
stored as a *pending* credential until a keyring version lists it.

A command or keyring change is signed by asking the authenticator for an assertion
whose challenge is the digest itself (``command_digest`` / ``keyring_digest``); the
assertion's parts become a ``Signature(kind="webauthn")`` unchanged, and the agent
checks the clientDataJSON challenge against the digest (``protocol.signing``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Final
from urllib.parse import urlsplit

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from webauthn import generate_registration_options, verify_registration_response
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    options_to_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from sekimori.protocol.actions import Signature
from sekimori.protocol.signing import OperatorKey, key_id

__all__ = [
    "ALGORITHMS",
    "Assertion",
    "ChallengeStore",
    "PasskeyError",
    "Registered",
    "RelyingParty",
    "assertion_signature",
    "b64url",
    "b64url_decode",
    "registration_options",
    "relying_party",
    "verify_registration",
]

RP_NAME: Final = "Sekimori"
# EdDSA, ES256 (P-256) and RS256: what the agent's verifier accepts.
ALGORITHMS: Final = [
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
TIMEOUT_MS: Final = 120_000


class PasskeyError(ValueError):
    """A registration or assertion that cannot be accepted; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who passkeys are made for: the console's host name (``rp_id``) and the exact
    origin pages are served from. Both are pinned in the keyring, so an agent accepts a
    passkey signature only if it was made on this console's pages."""

    rp_id: str
    origin: str

    @property
    def usable(self) -> bool:
        """Browsers make passkeys only for a domain (an IP address cannot be an rp
        id) in a secure context (HTTPS, or http://localhost)."""
        try:
            ipaddress.ip_address(self.rp_id.strip("[]"))
        except ValueError:
            return self.origin.startswith("https://") or self.rp_id == "localhost"
        return False


def relying_party(console_url: str, request_url: str) -> RelyingParty:
    """From the configured console URL when there is one (``notify.console_url``),
    else from the address the browser used (scheme and Host of the request)."""
    parts = urlsplit(console_url or request_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise PasskeyError(f"no console origin in {console_url or request_url!r}")
    origin = f"{parts.scheme}://{parts.netloc}"
    return RelyingParty(rp_id=parts.hostname, origin=origin)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PasskeyError("not base64url") from None


class ChallengeStore:
    """Registration challenges, one per console session, single use, short-lived.

    Kept in the replica's memory: a registration is begun and finished by the same
    page within a minute or two. Behind several replicas without session affinity a
    registration may have to be retried; signing needs no stored challenge (the
    challenge is the digest being signed)."""

    def __init__(self, ttl_s: float = 300.0, limit: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[bytes, float]] = {}

    def issue(self, session: str) -> bytes:
        challenge = secrets.token_bytes(32)
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.limit:
                self._entries = {k: v for k, v in self._entries.items() if now - v[1] < self.ttl_s}
                if len(self._entries) >= self.limit:
                    self._entries.pop(next(iter(self._entries)))
            self._entries[session] = (challenge, now)
        return challenge

    def take(self, session: str) -> bytes | None:
        """The session's challenge, which is then gone (single use), or None."""
        with self._lock:
            entry = self._entries.pop(session, None)
        if entry is None or time.monotonic() - entry[1] > self.ttl_s:
            return None
        return entry[0]


def registration_options(
    rp: RelyingParty,
    *,
    operator: str,
    user_handle: bytes,
    challenge: bytes,
    exclude: Sequence[bytes] = (),
) -> str:
    """``PublicKeyCredentialCreationOptions`` as JSON (binary fields base64url)."""
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=RP_NAME,
        user_name=operator,
        user_id=user_handle,
        user_display_name=operator,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in exclude],
        supported_pub_key_algs=list(ALGORITHMS),
    )
    return options_to_json(options)


@dataclass(frozen=True, slots=True)
class Registered:
    key: OperatorKey
    credential_id: bytes


def _spki(public: object) -> bytes:
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, ec.SECP256R1):
            raise PasskeyError("only P-256 elliptic-curve passkeys are accepted")
    elif isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 2048:
            raise PasskeyError("RSA passkeys under 2048 bits are refused")
    elif not isinstance(public, ed25519.Ed25519PublicKey):
        raise PasskeyError("unsupported passkey type")
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verify_registration(
    credential_json: str,
    *,
    rp: RelyingParty,
    challenge: bytes,
    operator: str,
    label: str,
) -> Registered:
    """Verify the browser's answer to ``navigator.credentials.create``; raises
    ``PasskeyError``."""
    try:
        verified = verify_registration_response(
            credential=credential_json,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            require_user_presence=True,
            require_user_verification=True,
            supported_pub_key_algs=list(ALGORITHMS),
        )
        decoded = decode_credential_public_key(verified.credential_public_key)
        public = decoded_public_key_to_cryptography(decoded)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise PasskeyError(f"passkey registration refused: {exc}") from None
    der = _spki(public)
    key = OperatorKey(
        key_id=key_id(der),
        operator=operator,
        label=label[:200],
        kind="webauthn",
        public_key=der,
        rp_id=rp.rp_id,
        origins=[rp.origin],
    )
    return Registered(key=key, credential_id=bytes(verified.credential_id))


_B64 = Annotated[str, msgspec.Meta(min_length=1, max_length=8192, pattern=r"^[A-Za-z0-9_-]+$")]


class Assertion(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The browser's answer to ``navigator.credentials.get``, fields base64url."""

    credential_id: _B64
    authenticator_data: _B64
    client_data_json: _B64
    signature: _B64


def assertion_signature(assertion: Assertion, key_ids: Mapping[bytes, str]) -> Signature:
    """The ``Signature`` of an assertion made with one of the user's credentials
    (``key_ids``: credential id → key id). Its validity is checked by whoever stores it,
    against the keyring; raises ``PasskeyError`` for an unknown credential or bad parts."""
    credential = b64url_decode(assertion.credential_id)
    kid = key_ids.get(credential)
    if kid is None:
        raise PasskeyError("this passkey is not one of your active operator credentials")
    try:
        return msgspec.convert(
            {
                "key_id": kid,
                "kind": "webauthn",
                "signature": b64url_decode(assertion.signature),
                "authenticator_data": b64url_decode(assertion.authenticator_data),
                "client_data_json": b64url_decode(assertion.client_data_json),
            },
            Signature,
        )
    except msgspec.ValidationError as exc:
        raise PasskeyError(f"passkey assertion refused: {exc}") from None
