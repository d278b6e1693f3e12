"""The blob store on the server's disk, encrypted with AES-256-GCM.

Layout: ``<root>/ab/cd/<sha256>`` (the hex digest of the plaintext; two fan-out levels
keep directories small). File format::

    b"SKB1" | key id length (1 byte) | key id (ASCII) | nonce (12 bytes) | ciphertext+tag

A random 96-bit nonce per blob; the associated data is the header plus the digest, so
a blob moved to another address, or given another key id, fails authentication.
Writes go to a temporary file in the same directory, are fsynced and renamed into
place: a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sekimori.server.blobs.keys import KeyRing, KeyRingError
from sekimori.server.blobs.store import SHA256_HEX, BlobCorrupt, BlobMissing, BlobRef

__all__ = ["MAGIC", "LocalEncryptedBlobStore", "blob_store_for"]

MAGIC = b"SKB1"
_NONCE = 12


def _check_digest(sha256: str) -> None:
    if not SHA256_HEX.match(sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")


class LocalEncryptedBlobStore:
    def __init__(self, root: Path, keys: KeyRing) -> None:
        self.root = root
        self.keys = keys

    def path_of(self, sha256: str) -> Path:
        _check_digest(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _seal(self, sha256: str, data: bytes, key_id: str, key: bytes) -> bytes:
        kid = key_id.encode("ascii")
        header = MAGIC + bytes([len(kid)]) + kid
        nonce = secrets.token_bytes(_NONCE)
        sealed = AESGCM(key).encrypt(nonce, data, header + sha256.encode("ascii"))
        return header + nonce + sealed

    def _write(self, path: Path, blob: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put(self, data: bytes) -> BlobRef:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.path_of(sha256)
        if path.exists():
            # Content addressed: the same bytes are stored already (a resent batch, an
            # unchanged screen). Touched, so garbage collection spares it until the
            # row that is about to reference it has committed.
            os.utime(path)
            return BlobRef(sha256, len(data), self.key_id_of(sha256))
        key_id, key = self.keys.current()
        self._write(path, self._seal(sha256, data, key_id, key))
        return BlobRef(sha256, len(data), key_id)

    def _read(self, sha256: str) -> bytes:
        try:
            return self.path_of(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(f"no blob {sha256}") from None

    @staticmethod
    def _parse(sha256: str, blob: bytes) -> tuple[bytes, str, bytes, bytes]:
        if len(blob) < len(MAGIC) + 1 or not blob.startswith(MAGIC):
            raise BlobCorrupt(f"blob {sha256}: not a Sekimori blob (bad header)")
        n = blob[len(MAGIC)]
        end = len(MAGIC) + 1 + n
        if len(blob) < end + _NONCE + 16:
            raise BlobCorrupt(f"blob {sha256}: truncated")
        try:
            key_id = blob[len(MAGIC) + 1 : end].decode("ascii")
        except UnicodeDecodeError:
            raise BlobCorrupt(f"blob {sha256}: bad key id in header") from None
        return blob[:end], key_id, blob[end : end + _NONCE], blob[end + _NONCE :]

    def key_id_of(self, sha256: str) -> str:
        return self._parse(sha256, self._read(sha256))[1]

    def get(self, sha256: str) -> bytes:
        header, key_id, nonce, sealed = self._parse(sha256, self._read(sha256))
        try:
            key = self.keys.key(key_id)
        except KeyRingError as exc:
            raise BlobCorrupt(f"blob {sha256}: {exc}") from None
        try:
            data = AESGCM(key).decrypt(nonce, sealed, header + sha256.encode("ascii"))
        except InvalidTag:
            raise BlobCorrupt(
                f"blob {sha256}: authentication failed (tampered, truncated or wrong key)"
            ) from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobCorrupt(f"blob {sha256}: content does not match its digest")
        return data

    def delete(self, sha256: str) -> bool:
        try:
            self.path_of(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def modified(self, sha256: str) -> float | None:
        try:
            return self.path_of(sha256).stat().st_mtime
        except FileNotFoundError:
            return None

    def digests(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            if not first.is_dir() or len(first.name) != 2:
                continue
            for second in sorted(first.iterdir()):
                if not second.is_dir():
                    continue
                for path in sorted(second.iterdir()):
                    if SHA256_HEX.match(path.name):
                        yield path.name

    def reencrypt(self, retire: bool = True) -> tuple[int, list[str]]:
        """Rewrite every blob not under the current key with it; then (``retire``)
        delete the keys no blob uses. Returns (blobs rewritten, keys retired).
        A blob that fails authentication stays as it is (BlobCorrupt is raised after
        the others are done, and no key is retired)."""
        key_id, key = self.keys.current()
        rewritten = 0
        corrupt: list[str] = []
        for sha256 in self.digests():
            try:
                if self.key_id_of(sha256) == key_id:
                    continue
                data = self.get(sha256)
            except BlobMissing:
                continue  # deleted meanwhile (retention)
            except BlobCorrupt:
                corrupt.append(sha256)
                continue
            self._write(self.path_of(sha256), self._seal(sha256, data, key_id, key))
            rewritten += 1
        if corrupt:
            raise BlobCorrupt(
                f"{len(corrupt)} blobs could not be decrypted and were left as they are "
                f"(first: {corrupt[0]}); no key was retired"
            )
        retired: list[str] = []
        if retire:
            for old in self.keys.key_ids():
                if old != key_id:
                    self.keys.retire(old)
                    retired.append(old)
        return rewritten, retired


def blob_store_for(data_dir: Path) -> LocalEncryptedBlobStore:
    """The server's blob store: ``<data_dir>/blobs``, keys in ``<data_dir>/pki/blob-keys``."""
    return LocalEncryptedBlobStore(data_dir / "blobs", KeyRing(data_dir / "pki" / "blob-keys"))
