"""Where the server keeps large binary objects (screen frames, issue 6): content
addressed by the SHA-256 of the plaintext, encrypted at rest.

``BlobStore`` is the interface (an S3-compatible backend can implement it later);
``LocalEncryptedBlobStore`` keeps the blobs under ``<data_dir>/blobs`` with AES-256-GCM
and the key ring of ``sekimori.server.blobs.keys``. See docs/screens.md.
"""

from __future__ import annotations

from sekimori.server.blobs.keys import KeyRing, KeyRingError
from sekimori.server.blobs.local import LocalEncryptedBlobStore, blob_store_for
from sekimori.server.blobs.store import BlobCorrupt, BlobError, BlobMissing, BlobRef, BlobStore

__all__ = [
    "BlobCorrupt",
    "BlobError",
    "BlobMissing",
    "BlobRef",
    "BlobStore",
    "KeyRing",
    "KeyRingError",
    "LocalEncryptedBlobStore",
    "blob_store_for",
]
