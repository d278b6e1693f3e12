"""The deployment's public-key infrastructure.

Two separate roots, on purpose:

* the **deployment CA** signs the server's TLS certificate. Agents pin its SHA-256
  fingerprint at enrollment and trust nothing else. It signs no device certificate,
  so a stolen device key can never pose as the server.
* the **device CA** signs one certificate per enrolled device (CN = device id,
  clientAuth only). The server accepts client certificates from it alone, and then
  checks the device registry (revocation, serial) on every connection.

Key files are written 0600. After ``init`` the deployment CA key is only needed to
re-issue the server certificate and may be moved offline.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PKI", "EnrollmentRefused", "fingerprint_of_pem", "normalize_fingerprint"]

_CA_YEARS = 10
_SERVER_DAYS = 825
_DEVICE_DAYS = 5 * 365


class EnrollmentRefused(Exception):
    """A certificate request that cannot be honoured; the message is safe to show."""


def normalize_fingerprint(text: str) -> str:
    """``SHA256:AB:CD...`` / ``abcd...`` -> ``abcd...`` (64 lowercase hex digits)."""
    value = text.strip().lower()
    value = value.removeprefix("sha256:").replace(":", "")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("a CA fingerprint is 64 hexadecimal digits (SHA-256)")
    return value


def fingerprint_of_pem(pem: bytes) -> str:
    der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
    return hashlib.sha256(der).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _self_signed_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sekimori"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * _CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def default_server_names() -> list[str]:
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    fqdn = socket.getfqdn()
    if fqdn not in names:
        names.append(fqdn)
    return names


@dataclass(frozen=True)
class PKI:
    """The key material in ``<data_dir>/pki``."""

    directory: Path

    @property
    def ca_cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def device_ca_cert_path(self) -> Path:
        return self.directory / "device-ca.crt"

    @property
    def server_cert_path(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key_path(self) -> Path:
        return self.directory / "server.key"

    def exists(self) -> bool:
        return self.ca_cert_path.exists() and self.server_cert_path.exists()

    def initialize(self, names: list[str]) -> None:
        """Create both CAs and the server certificate (if not already there)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.ca_cert_path.exists():
            key, cert = _self_signed_ca("Sekimori deployment CA")
            _write_private(self.directory / "ca.key", _key_pem(key))
            self.ca_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if not self.device_ca_cert_path.exists():
            key, cert = _self_signed_ca("Sekimori device CA")
            _write_private(self.directory / "device-ca.key", _key_pem(key))
            self.device_ca_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if not self.server_cert_path.exists() or not self._server_cert_covers(names):
            # First start, or names were added to server.tls_names since: re-issue so
            # agents dialling the new name pass their hostname check.
            self.issue_server_certificate(names)

    def _server_cert_covers(self, names: list[str]) -> bool:
        cert = x509.load_pem_x509_certificate(self.server_cert_path.read_bytes())
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        present = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
        present |= set(san.get_values_for_type(x509.DNSName))
        wanted = set()
        for name in names:
            try:
                wanted.add(str(ipaddress.ip_address(name)))
            except ValueError:
                wanted.add(name)
        return wanted <= present

    def _load_ca(self, stem: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = serialization.load_pem_private_key(
            (self.directory / f"{stem}.key").read_bytes(), password=None
        )
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{stem}.key is not an EC key")
        cert = x509.load_pem_x509_certificate((self.directory / f"{stem}.crt").read_bytes())
        return key, cert

    def issue_server_certificate(self, names: list[str]) -> None:
        ca_key, ca_cert = self._load_ca("ca")
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in dict.fromkeys(names):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sekimori-server")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_SERVER_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(self.server_key_path, _key_pem(key))
        self.server_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def ca_pem(self) -> bytes:
        return self.ca_cert_path.read_bytes()

    def ca_fingerprint(self) -> str:
        return fingerprint_of_pem(self.ca_pem())

    def sign_device_csr(self, csr_pem: str, device_id: str) -> tuple[str, str]:
        """Issue a device certificate for the key in ``csr_pem``.

        The CSR's subject is ignored: the identity is the server-chosen device id.
        Returns (certificate PEM, serial as hex). Raises EnrollmentRefused.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise EnrollmentRefused("the certificate request is not a valid PEM CSR") from None
        if not csr.is_signature_valid:
            raise EnrollmentRefused("the certificate request's signature does not verify")
        public = csr.public_key()
        if not (
            (isinstance(public, ec.EllipticCurvePublicKey) and public.curve.key_size >= 256)
            or isinstance(public, ed25519.Ed25519PublicKey)
        ):
            raise EnrollmentRefused("device keys must be EC P-256 or stronger, or Ed25519")
        ca_key, ca_cert = self._load_ca("device-ca")
        now = _now()
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sekimori device"),
                        x509.NameAttribute(NameOID.COMMON_NAME, device_id),
                    ]
                )
            )
            .issuer_name(ca_cert.subject)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_DEVICE_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), format(serial, "x")

    def server_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # Both ends are ours: TLS 1.3 only.
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.server_cert_path, self.server_key_path)
        # OPTIONAL: an enrolling agent has no certificate yet; every other message
        # requires one, checked by the channel after the handshake.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cafile=str(self.device_ca_cert_path))
        return ctx


def peer_device_certificate(der: bytes) -> tuple[str, str]:
    """(device id, serial hex) of a client certificate the TLS layer verified."""
    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        raise ValueError("client certificate has no common name")
    value = cns[0].value
    device_id = value if isinstance(value, str) else value.decode("utf-8")
    return device_id, format(cert.serial_number, "x")
