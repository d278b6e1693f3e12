"""The agent's identity on disk: its private key, its certificate, the pinned CA.

Layout of the state directory::

    identity.json   device id, server URL, pinned CA fingerprint
    device.key      private key (0600), made on this PC, never leaves it
    device.crt      certificate issued by the server at enrollment
    ca.crt          the deployment CA whose SHA-256 fingerprint was pinned
    outbox.db       the durable outbox
"""

from __future__ import annotations

import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import msgspec

__all__ = ["Identity", "NotEnrolled", "client_ssl_context", "write_private"]


class NotEnrolled(Exception):
    """The state directory holds no identity: the agent must enroll first."""


class _IdentityFile(msgspec.Struct, forbid_unknown_fields=True):
    device_id: str
    server_url: str
    ca_fingerprint: str


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write atomically (temp file + rename) with the given mode."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Identity:
    state_dir: Path
    device_id: str
    server_url: str
    ca_fingerprint: str

    @property
    def key_path(self) -> Path:
        return self.state_dir / "device.key"

    @property
    def cert_path(self) -> Path:
        return self.state_dir / "device.crt"

    @property
    def ca_path(self) -> Path:
        return self.state_dir / "ca.crt"

    @classmethod
    def load(cls, state_dir: Path) -> Identity:
        path = state_dir / "identity.json"
        try:
            data = msgspec.json.decode(path.read_bytes(), type=_IdentityFile)
        except FileNotFoundError:
            raise NotEnrolled(
                f"this agent is not enrolled ({path} is missing): run 'sekimori agent enroll'"
            ) from None
        except msgspec.DecodeError as exc:
            raise NotEnrolled(f"{path} is damaged ({exc}): enroll again") from None
        identity = cls(state_dir, data.device_id, data.server_url, data.ca_fingerprint)
        # Refuse a CA file that no longer matches the pin (tampering or corruption).
        try:
            der = ssl.PEM_cert_to_DER_cert(identity.ca_path.read_text(encoding="ascii"))
        except (OSError, ValueError) as exc:  # missing, unreadable, or not a PEM certificate
            raise NotEnrolled(
                f"{identity.ca_path} is missing or damaged ({exc}): enroll again"
            ) from None
        if hashlib.sha256(der).hexdigest() != identity.ca_fingerprint:
            raise NotEnrolled(f"{identity.ca_path} does not match the pinned fingerprint")
        return identity

    def save(self) -> None:
        record = _IdentityFile(self.device_id, self.server_url, self.ca_fingerprint)
        write_private(self.state_dir / "identity.json", msgspec.json.encode(record), 0o644)


def client_ssl_context(ca_path: Path, identity: Identity | None = None) -> ssl.SSLContext:
    """TLS 1.3 to the pinned deployment CA only, hostname checked; with the device
    certificate when an identity is given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca_path))
    if identity is not None:
        ctx.load_cert_chain(identity.cert_path, identity.key_path)
    return ctx
