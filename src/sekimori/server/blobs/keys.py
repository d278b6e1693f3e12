"""The key ring of the blob store: ``<data_dir>/pki/blob-keys/``.

Each key is a file ``<key id>.key`` holding 32 random bytes (AES-256), mode 0600, in a
0700 directory; ``current`` names the key that encrypts new blobs. Older keys stay
so old blobs still decrypt (each blob names its key in its header) until
``sekimori screens rotate-key --reencrypt`` has rewritten them and retires the keys.

The ring re-reads ``current`` on use, so a rotation by the CLI while the server runs
takes effect for the next blob without a restart.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from pathlib import Path

from sekimori.clock import now_us

__all__ = ["KEY_BYTES", "KeyRing", "KeyRingError"]

KEY_BYTES = 32
_KEY_ID = re.compile(r"^[0-9a-z-]{1,40}$")


class KeyRingError(Exception):
    """The key ring is unusable (missing key, bad file, bad permissions)."""


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class KeyRing:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @property
    def _current_path(self) -> Path:
        return self.directory / "current"

    def _ensure_dir(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)

    def key_ids(self) -> list[str]:
        """The keys on disk, oldest first (ids start with their creation time)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.key"))

    def current_id(self) -> str | None:
        try:
            text = self._current_path.read_text("ascii").strip()
        except FileNotFoundError:
            return None
        if not _KEY_ID.match(text):
            raise KeyRingError(f"{self._current_path}: not a key id")
        return text

    def key(self, key_id: str) -> bytes:
        """The key ``key_id``; KeyRingError when it is not in the ring."""
        if not _KEY_ID.match(key_id):
            raise KeyRingError(f"not a key id: {key_id!r}")
        with self._lock:
            cached = self._keys.get(key_id)
        if cached is not None:
            return cached
        path = self.directory / f"{key_id}.key"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyRingError(f"blob key {key_id} is not in {self.directory}") from None
        if len(data) != KEY_BYTES:
            raise KeyRingError(f"{path}: a blob key has {KEY_BYTES} bytes, not {len(data)}")
        with self._lock:
            self._keys[key_id] = data
        return data

    def current(self) -> tuple[str, bytes]:
        """The key for new blobs, created on first use."""
        key_id = self.current_id()
        if key_id is None:
            with self._lock:
                if self.current_id() is None:
                    self._new_key_locked()
            key_id = self.current_id()
            assert key_id is not None  # noqa: S101 - just written
        return key_id, self.key(key_id)

    def rotate(self) -> str:
        """Create a new key and make it current; returns its id."""
        with self._lock:
            return self._new_key_locked()

    def _new_key_locked(self) -> str:
        self._ensure_dir()
        key_id = f"{now_us():017d}-{secrets.token_hex(3)}"
        _write_private(self.directory / f"{key_id}.key", secrets.token_bytes(KEY_BYTES))
        _write_private(self._current_path, key_id.encode("ascii") + b"\n")
        return key_id

    def retire(self, key_id: str) -> None:
        """Delete a key that no blob uses any more (never the current one)."""
        if key_id == self.current_id():
            raise KeyRingError(f"blob key {key_id} is the current key")
        self.key(key_id)  # validates the id
        (self.directory / f"{key_id}.key").unlink()
        with self._lock:
            self._keys.pop(key_id, None)
