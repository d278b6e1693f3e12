"""Enrollment, agent side.

1. Fetch the deployment CA certificate from the server over TLS *without* trusting
   it yet, and compare its SHA-256 with the fingerprint the administrator gave us.
   A mismatch stops here: the token is never sent to an unverified server.
2. Make a key pair on this PC (it never leaves it) and a certificate request.
3. Over TLS verified against the pinned CA, send the one-time token and the request;
   store the issued certificate.
4. With ``operators`` (``--operators SHA256:<hex>``): pin the operator keyring the
   server sent in ``enrolled.operators`` only if its fingerprint is that one. A
   mismatch (or no keyring) enrolls nothing: no identity is written, as for a CA
   mismatch. Without it no operator is trusted (``sekimori agent trust-operators``
   later). The PC's own action policy is written here too
   (``sekimori.agent.actions.local_policy``).

This module is used at enrollment only; the running agent never imports it.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import ssl
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from sekimori import __version__
from sekimori.agent.actions.keyring import (
    OPERATORS_FILE,
    KeyringError,
    parse_fingerprint,
    pin_keyring,
)
from sekimori.agent.actions.local_policy import LocalActionPolicy, write_local_policy
from sekimori.agent.host import host_info
from sekimori.agent.identity import Identity, client_ssl_context, write_private
from sekimori.protocol import (
    Enroll,
    Enrolled,
    ErrorMessage,
    ProtocolError,
    decode_server_message,
    encode_message,
)

__all__ = ["EnrollmentError", "enroll", "normalize_server_url"]

_MAX_CA_BYTES = 64 * 1024


class EnrollmentError(Exception):
    """Enrollment failed; the message says why in words an administrator can act on."""


def normalize_server_url(url: str) -> str:
    """``wss://host[:port][/path]`` -> ``wss://host:port/v1/agent``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("wss", "https"):
        raise EnrollmentError(f"the server URL must start with wss:// (got {url!r})")
    if not parts.hostname:
        raise EnrollmentError(f"the server URL has no host: {url!r}")
    port = parts.port or 8443
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit(("wss", f"{host}:{port}", "/v1/agent", "", ""))


def _fetch_ca(url: str, timeout: float) -> bytes:
    parts = urlsplit(url)
    # Unverified on purpose: the fingerprint comparison below is the verification.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(
        parts.hostname or "", parts.port or 8443, context=ctx, timeout=timeout
    )
    try:
        conn.request("GET", "/v1/ca.pem")
        response = conn.getresponse()
        body = response.read(_MAX_CA_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise EnrollmentError(f"cannot reach the server at {url}: {exc}") from None
    finally:
        conn.close()
    if response.status != 200 or len(body) > _MAX_CA_BYTES:
        raise EnrollmentError(
            f"the server did not return its CA certificate (HTTP {response.status})"
        )
    return body


def _check_pin(ca_pem: bytes, expected: str) -> None:
    try:
        der = ssl.PEM_cert_to_DER_cert(ca_pem.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise EnrollmentError("the server sent something that is not a certificate") from None
    actual = hashlib.sha256(der).hexdigest()
    if actual != expected:
        raise EnrollmentError(
            f"the server's CA fingerprint is {actual}, not the pinned {expected}: "
            "refusing to enroll (wrong server, or someone in between)"
        )


def _make_key_and_csr() -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sekimori-agent")]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


async def _request_certificate(
    url: str, ca_path: Path, request: Enroll, timeout: float
) -> Enrolled:
    try:
        async with connect(
            url,
            ssl=client_ssl_context(ca_path),
            open_timeout=timeout,
            compression=None,
            max_size=1024 * 1024,
        ) as ws:
            await ws.send(encode_message(request))
            frame = await asyncio.wait_for(ws.recv(), timeout)
    except ssl.SSLCertVerificationError as exc:
        raise EnrollmentError(
            f"the server's certificate is not valid for {url}: {exc.verify_message}"
        ) from None
    except (OSError, InvalidHandshake, WebSocketException, TimeoutError) as exc:
        raise EnrollmentError(f"enrollment connection to {url} failed: {exc}") from None
    if isinstance(frame, str):
        raise EnrollmentError("the server sent a text frame")
    try:
        reply = decode_server_message(frame, 1024 * 1024)
    except ProtocolError as exc:
        raise EnrollmentError(f"the server's reply is invalid: {exc.message}") from None
    if isinstance(reply, ErrorMessage):
        raise EnrollmentError(f"the server refused enrollment: {reply.message}")
    if not isinstance(reply, Enrolled):
        raise EnrollmentError(f"unexpected reply {reply.__class__.__name__}")
    return reply


def _pin_operators(state_dir: Path, reply: Enrolled, fingerprint: str) -> None:
    """Pin the keyring of ``reply`` or raise EnrollmentError having written nothing
    that makes this PC enrolled (the CA file goes too)."""
    problem = ""
    if not reply.operators:
        problem = "the server sent no operator keyring"
    else:
        try:
            pin_keyring(state_dir, reply.operators, fingerprint)
        except KeyringError as exc:
            problem = str(exc)
    if problem:
        (state_dir / "ca.crt").unlink(missing_ok=True)
        raise EnrollmentError(
            f"{problem}: refusing to enroll (wrong server, or its operator keys were "
            f"replaced). The server registered device {reply.device_id}: revoke it there."
        )


def enroll(
    state_dir: Path,
    server_url: str,
    token: str,
    ca_fingerprint: str,
    *,
    group: str | None = None,
    timeout: float = 15.0,
    operators: str | None = None,
    action_policy: LocalActionPolicy | None = None,
) -> Identity:
    """Enroll this PC and write its identity into ``state_dir``. Raises EnrollmentError.

    ``operators``: the fingerprint of the operator keyring to pin (``SHA256:<hex>``);
    ``action_policy``: the PC's own action policy (default: the defaults)."""
    value = ca_fingerprint.strip().lower().removeprefix("sha256:").replace(":", "")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise EnrollmentError("the CA fingerprint must be 64 hexadecimal digits (SHA-256)")
    if operators is not None:
        try:
            operators = parse_fingerprint(operators)
        except KeyringError as exc:
            raise EnrollmentError(str(exc)) from None
    url = normalize_server_url(server_url)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_pem = _fetch_ca(url, timeout)
    _check_pin(ca_pem, value)
    ca_path = state_dir / "ca.crt"
    write_private(ca_path, ca_pem, 0o644)
    key_pem, csr_pem = _make_key_and_csr()
    info = host_info()
    request = Enroll(
        token=token.strip(),
        csr_pem=csr_pem,
        hostname=info.hostname,
        os=info.os,
        os_version=info.os_version,
        agent_version=__version__,
        group=group,
    )
    reply = asyncio.run(_request_certificate(url, ca_path, request, timeout))
    if operators is not None:
        _pin_operators(state_dir, reply, operators)
    else:
        # A keyring pinned by an earlier enrollment belongs to that one.
        (state_dir / OPERATORS_FILE).unlink(missing_ok=True)
    write_local_policy(state_dir, action_policy or LocalActionPolicy())
    write_private(state_dir / "device.key", key_pem)
    write_private(state_dir / "device.crt", reply.certificate_pem.encode("ascii"), 0o644)
    identity = Identity(state_dir, reply.device_id, url, value)
    identity.save()
    return identity
