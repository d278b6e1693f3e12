"""The deployment PKI: two roots, device certificates, server certificate names."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sekimori.agent.enroll import _make_key_and_csr
from sekimori.server.pki import PKI, EnrollmentRefused, peer_device_certificate


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    p = PKI(tmp_path / "pki")
    p.initialize(["localhost", "127.0.0.1"])
    return p


def test_device_certificates_come_from_a_root_agents_do_not_pin(pki: PKI) -> None:
    _, csr = _make_key_and_csr()
    pem, serial = pki.sign_device_csr(csr, "dev-1")
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.issuer != x509.load_pem_x509_certificate(pki.ca_pem()).subject
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-1"
    der = ssl.PEM_cert_to_DER_cert(pem)
    assert peer_device_certificate(der) == ("dev-1", serial)


def test_a_tampered_or_garbage_csr_is_refused(pki: PKI) -> None:
    with pytest.raises(EnrollmentRefused, match="not a valid PEM CSR"):
        pki.sign_device_csr("hello", "dev")
    _, csr = _make_key_and_csr()
    body = csr.splitlines()
    # Flip a character in the signature part of the request.
    line = body[-2]
    body[-2] = line[:-4] + ("AAAA" if line[-4:] != "AAAA" else "BBBB")
    with pytest.raises(EnrollmentRefused):
        pki.sign_device_csr("\n".join(body) + "\n", "dev")


def test_server_certificate_is_reissued_when_names_are_added(pki: PKI) -> None:
    before = pki.server_cert_path.read_bytes()
    ca_before = pki.ca_pem()
    pki.initialize(["localhost", "127.0.0.1"])
    assert pki.server_cert_path.read_bytes() == before, "same names: kept"
    pki.initialize(["localhost", "127.0.0.1", "sekimori.example", "10.0.0.5"])
    cert = x509.load_pem_x509_certificate(pki.server_cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "sekimori.example" in san.get_values_for_type(x509.DNSName)
    assert pki.ca_pem() == ca_before, "the pinned CA never changes"


def test_server_context_is_tls13_and_asks_for_device_certificates(pki: PKI) -> None:
    ctx = pki.server_ssl_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert (pki.directory / "ca.key").stat().st_mode & 0o777 == 0o600
