"""Importing a feed file: detect its kind, parse it whole, then write it in one
transaction. A file that fails anywhere — unreadable zip, schema violation, a
truncated catalog — changes nothing but the import log, which records the reason.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from sekimori.server.store.vuln_feeds import ImportRecord, record_failed_import, write_feed
from sekimori.server.vuln.feeds import FEEDS, FeedError, FeedLimits, detect_kind

__all__ = ["import_feed"]


def import_feed(
    engine: sa.Engine,
    data: bytes,
    *,
    source: str,
    imported_by: str,
    now_us: int,
    kind: str | None = None,
    limits: FeedLimits | None = None,
) -> ImportRecord:
    """Parse and store one feed file. Raises FeedError (after logging the failed
    import) when the file is refused; nothing else in the store changes then."""
    sha256 = hashlib.sha256(data).hexdigest()
    limits = limits or FeedLimits()
    chosen = kind or ""
    try:
        chosen = chosen or detect_kind(data)
        parser = FEEDS.get(chosen)
        if parser is None:
            raise FeedError(f"unknown feed kind {chosen!r} (osv, kev or nvd)")
        feed = parser(data, source, limits)
    except FeedError as exc:
        record_failed_import(
            engine,
            kind=chosen if chosen in FEEDS else "unknown",
            source=source,
            sha256=sha256,
            message=str(exc),
            imported_by=imported_by,
            now_us=now_us,
        )
        raise
    return write_feed(
        engine, feed, source=source, sha256=sha256, imported_by=imported_by, now_us=now_us
    )
