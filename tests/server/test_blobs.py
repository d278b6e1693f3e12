"""The encrypted blob store: round trip, encryption at rest, tamper detection, key
rotation and re-encryption (real files, real AES-GCM)."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from sekimori.server.blobs import BlobCorrupt, BlobMissing, KeyRing, LocalEncryptedBlobStore
from sekimori.server.blobs.keys import KeyRingError


def _store(tmp_path: Path) -> LocalEncryptedBlobStore:
    return LocalEncryptedBlobStore(tmp_path / "blobs", KeyRing(tmp_path / "pki" / "blob-keys"))


PICTURE = b"\x89PNG\r\n\x1a\n" + b"secret screen content " * 200


def test_round_trip_content_addressed_and_encrypted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ref = store.put(PICTURE)
    assert ref.sha256 == hashlib.sha256(PICTURE).hexdigest()
    assert ref.size == len(PICTURE)
    path = store.path_of(ref.sha256)
    assert path == tmp_path / "blobs" / ref.sha256[:2] / ref.sha256[2:4] / ref.sha256
    raw = path.read_bytes()
    assert b"secret screen content" not in raw
    assert PICTURE[:8] not in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.get(ref.sha256) == PICTURE
    assert store.exists(ref.sha256)
    # The same bytes again: the same blob, not rewritten (a new nonce would change it).
    assert store.put(PICTURE) == ref
    assert path.read_bytes() == raw
    assert list(store.digests()) == [ref.sha256]
    assert not list(path.parent.glob(".*.tmp"))


def test_key_files_are_private(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ref = store.put(b"x")
    keydir = tmp_path / "pki" / "blob-keys"
    assert stat.S_IMODE(keydir.stat().st_mode) == 0o700
    key_file = keydir / f"{ref.key_id}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32


@pytest.mark.parametrize("where", ["header", "nonce", "ciphertext", "tag", "truncate"])
def test_tampering_is_detected(tmp_path: Path, where: str) -> None:
    store = _store(tmp_path)
    ref = store.put(PICTURE)
    path = store.path_of(ref.sha256)
    raw = bytearray(path.read_bytes())
    header = 4 + 1 + raw[4]
    if where == "header":
        raw[0] ^= 1
    elif where == "nonce":
        raw[header] ^= 1
    elif where == "ciphertext":
        raw[header + 12 + 5] ^= 0x40
    elif where == "tag":
        raw[-1] ^= 1
    else:
        del raw[-20:]
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobCorrupt):
        store.get(ref.sha256)


def test_a_blob_moved_to_another_address_fails(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a = store.put(b"first picture")
    b = store.put(b"second picture")
    store.path_of(b.sha256).write_bytes(store.path_of(a.sha256).read_bytes())
    with pytest.raises(BlobCorrupt, match="authentication failed"):
        store.get(b.sha256)


def test_missing_blob_and_bad_digest(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(BlobMissing):
        store.get("0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        store.get("../../etc/passwd")
    assert not store.delete("0" * 64)


def test_lost_key_gives_a_clear_error(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ref = store.put(PICTURE)
    (tmp_path / "pki" / "blob-keys" / f"{ref.key_id}.key").unlink()
    fresh = _store(tmp_path)
    with pytest.raises(BlobCorrupt, match="not in"):
        fresh.get(ref.sha256)


def test_rotation_keeps_old_blobs_readable(tmp_path: Path) -> None:
    store = _store(tmp_path)
    old = store.put(b"before rotation")
    # The rotation happens in another process (the CLI): a separate key ring object.
    new_id = KeyRing(tmp_path / "pki" / "blob-keys").rotate()
    assert new_id != old.key_id
    new = store.put(b"after rotation")
    assert new.key_id == new_id
    assert store.get(old.sha256) == b"before rotation"
    assert store.key_id_of(old.sha256) == old.key_id
    assert store.get(new.sha256) == b"after rotation"


def test_reencrypt_rewrites_and_retires(tmp_path: Path) -> None:
    store = _store(tmp_path)
    olds = [store.put(f"picture {i}".encode()) for i in range(5)]
    ring = store.keys
    first = olds[0].key_id
    new_id = ring.rotate()
    rewritten, retired = store.reencrypt()
    assert rewritten == 5
    assert retired == [first]
    assert ring.key_ids() == [new_id]
    for i, ref in enumerate(olds):
        assert store.key_id_of(ref.sha256) == new_id
        assert store.get(ref.sha256) == f"picture {i}".encode()
    # Nothing left to do.
    assert store.reencrypt() == (0, [])
    with pytest.raises(KeyRingError, match="current"):
        ring.retire(new_id)


def test_reencrypt_keeps_keys_when_a_blob_is_corrupt(tmp_path: Path) -> None:
    store = _store(tmp_path)
    good = store.put(b"good")
    bad = store.put(b"bad")
    path = store.path_of(bad.sha256)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    store.keys.rotate()
    with pytest.raises(BlobCorrupt, match="no key was retired"):
        store.reencrypt()
    assert len(store.keys.key_ids()) == 2
    assert store.get(good.sha256) == b"good"
