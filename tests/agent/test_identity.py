"""The agent's identity on disk, and refusing one that is missing or tampered with."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec
import pytest

from sekimori.agent.identity import Identity, NotEnrolled, client_ssl_context, write_private
from sekimori.server.pki import PKI, fingerprint_of_pem


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[PKI, PKI]:
    """Two unrelated deployments: the pinned one and an impostor."""
    base = tmp_path_factory.mktemp("pki")
    ours, theirs = PKI(base / "ours"), PKI(base / "theirs")
    ours.initialize(["localhost"])
    theirs.initialize(["localhost"])
    return ours, theirs


@pytest.fixture
def enrolled(tmp_path: Path, two_cas: tuple[PKI, PKI]) -> Identity:
    ours, _ = two_cas
    state = tmp_path / "state"
    state.mkdir()
    (state / "ca.crt").write_bytes(ours.ca_pem())
    identity = Identity(state, "dev-1234", "wss://localhost:8443", ours.ca_fingerprint())
    identity.save()
    return identity


def test_saved_identity_loads_back(enrolled: Identity) -> None:
    loaded = Identity.load(enrolled.state_dir)
    assert loaded == enrolled
    assert loaded.ca_path == enrolled.state_dir / "ca.crt"
    assert loaded.key_path.name == "device.key"
    assert loaded.cert_path.name == "device.crt"


def test_missing_directory_is_not_enrolled_with_a_hint(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(NotEnrolled) as info:
        Identity.load(missing)
    message = str(info.value)
    assert "not enrolled" in message
    assert str(missing / "identity.json") in message
    assert "sekimori agent enroll" in message


def test_empty_directory_is_not_enrolled(tmp_path: Path) -> None:
    with pytest.raises(NotEnrolled, match="not enrolled"):
        Identity.load(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'{"device_id": "d", "server_url": "wss://x"}',
        b'{"device_id": 1, "server_url": "wss://x", "ca_fingerprint": "ab"}',
        b'{"device_id": "d", "server_url": "wss://x", "ca_fingerprint": "ab", "extra": 1}',
    ],
)
def test_damaged_identity_file_is_not_enrolled(enrolled: Identity, content: bytes) -> None:
    (enrolled.state_dir / "identity.json").write_bytes(content)
    with pytest.raises(NotEnrolled, match=r"damaged.*enroll again"):
        Identity.load(enrolled.state_dir)


def test_ca_not_matching_the_pin_is_not_enrolled(
    enrolled: Identity, two_cas: tuple[PKI, PKI]
) -> None:
    _, theirs = two_cas
    (enrolled.state_dir / "ca.crt").write_bytes(theirs.ca_pem())
    with pytest.raises(NotEnrolled, match="does not match the pinned fingerprint"):
        Identity.load(enrolled.state_dir)


def test_pin_not_matching_the_ca_is_not_enrolled(
    enrolled: Identity, two_cas: tuple[PKI, PKI]
) -> None:
    _, theirs = two_cas
    Identity(
        enrolled.state_dir, enrolled.device_id, enrolled.server_url, theirs.ca_fingerprint()
    ).save()
    with pytest.raises(NotEnrolled, match="pinned fingerprint"):
        Identity.load(enrolled.state_dir)


def test_missing_ca_file_is_not_enrolled(enrolled: Identity) -> None:
    enrolled.ca_path.unlink()
    with pytest.raises(NotEnrolled, match=r"ca\.crt"):
        Identity.load(enrolled.state_dir)


@pytest.mark.parametrize("content", [b"", b"garbage", b"\xff\xfe not ascii"])
def test_damaged_ca_file_is_not_enrolled(enrolled: Identity, content: bytes) -> None:
    enrolled.ca_path.write_bytes(content)
    with pytest.raises(NotEnrolled, match=r"ca\.crt"):
        Identity.load(enrolled.state_dir)


def test_identity_file_is_json_with_the_pin(enrolled: Identity) -> None:
    data = msgspec.json.decode((enrolled.state_dir / "identity.json").read_bytes())
    assert data == {
        "device_id": "dev-1234",
        "server_url": "wss://localhost:8443",
        "ca_fingerprint": fingerprint_of_pem(enrolled.ca_path.read_bytes()),
    }
    assert len(data["ca_fingerprint"]) == 64


def test_write_private_is_atomic_and_private(tmp_path: Path) -> None:
    target = tmp_path / "device.key"
    write_private(target, b"first")
    write_private(target, b"second")
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert not (tmp_path / "device.key.tmp").exists()
    write_private(tmp_path / "public", b"x", 0o644)
    public = stat.S_IMODE(os.stat(tmp_path / "public").st_mode)
    assert public & 0o600 == 0o600
    assert public & ~0o644 == 0  # never more than asked for


def test_client_context_trusts_only_the_pinned_ca(enrolled: Identity) -> None:
    import ssl

    ctx = client_ssl_context(enrolled.ca_path)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    (ca,) = ctx.get_ca_certs(binary_form=True)
    assert ca == ssl.PEM_cert_to_DER_cert(enrolled.ca_path.read_text(encoding="ascii"))
