"""The blob store interface."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["SHA256_HEX", "BlobCorrupt", "BlobError", "BlobMissing", "BlobRef", "BlobStore"]

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """A blob could not be stored or read."""


class BlobMissing(BlobError):
    """No blob with this digest is stored."""


class BlobCorrupt(BlobError):
    """A stored blob failed authentication (tampered, truncated, wrong key) or does
    not match its digest. Never returned as data."""


@dataclass(frozen=True, slots=True)
class BlobRef:
    sha256: str  # hex digest of the plaintext: the blob's address
    size: int  # plaintext bytes
    key_id: str  # the key that encrypts it


class BlobStore(Protocol):
    def put(self, data: bytes) -> BlobRef:
        """Store ``data`` (idempotent: the same bytes map to the same blob)."""
        ...

    def get(self, sha256: str) -> bytes:
        """The plaintext; BlobMissing or BlobCorrupt, never wrong bytes."""
        ...

    def delete(self, sha256: str) -> bool:
        """Remove the blob; False when there was none."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def modified(self, sha256: str) -> float | None:
        """When the blob was last written or put again (epoch seconds); None if absent.
        Garbage collection spares recent blobs (their rows may not be committed yet)."""
        ...

    def digests(self) -> Iterator[str]:
        """Every stored digest (for garbage collection of unreferenced blobs)."""
        ...
