"""Reading OSV zips (``all.zip``, ``<Ecosystem>/all.zip``) without trusting them.

A zip's directory can lie about sizes, so every entry is read through a bounded
stream: past ``max_entry_bytes`` for one entry or ``max_uncompressed_bytes`` for all of
them the file is refused (a zip bomb inflates to terabytes from kilobytes). A
truncated or corrupt zip fails its directory or CRC check and is refused whole.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

from sekimori.server.vuln.feeds.base import FeedError, FeedLimits

__all__ = ["is_zip", "zip_entries"]

_CHUNK = 1024 * 1024


def is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06"


def zip_entries(data: bytes, limits: FeedLimits) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, content)`` for each ``*.json`` entry; raises FeedError."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise FeedError(f"not a readable zip archive (truncated or corrupt?): {exc}") from exc
    if len(infos) > limits.max_entries:
        raise FeedError(
            f"the zip has {len(infos)} entries, more than the limit of {limits.max_entries}"
        )
    total = 0
    with archive:
        for info in infos:
            if info.is_dir() or not info.filename.endswith(".json"):
                continue
            chunks: list[bytes] = []
            size = 0
            try:
                with archive.open(info) as stream:
                    while chunk := stream.read(_CHUNK):
                        size += len(chunk)
                        total += len(chunk)
                        if size > limits.max_entry_bytes:
                            raise FeedError(
                                f"zip entry {info.filename}: larger than "
                                f"{limits.max_entry_bytes} bytes inflated"
                            )
                        if total > limits.max_uncompressed_bytes:
                            raise FeedError(
                                "the zip inflates to more than "
                                f"{limits.max_uncompressed_bytes} bytes"
                            )
                        chunks.append(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise FeedError(f"zip entry {info.filename}: unreadable ({exc})") from exc
            yield info.filename, b"".join(chunks)
