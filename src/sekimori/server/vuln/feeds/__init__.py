"""Vulnerability feeds: one parser per kind, registered here (fixed at import).

``FEEDS[kind](data, source, limits)`` parses a whole file (see ``base.FeedParser``);
``detect_kind`` guesses the kind of a file from its first bytes for
``sekimori vuln import FILE`` without ``--kind``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from sekimori.server.vuln.feeds.archive import is_zip
from sekimori.server.vuln.feeds.base import (
    Advisory,
    AffectedRange,
    FeedError,
    FeedKind,
    FeedLimits,
    FeedParser,
    KevEntry,
    ParsedFeed,
)
from sekimori.server.vuln.feeds.kev import parse_kev
from sekimori.server.vuln.feeds.nvd import parse_nvd
from sekimori.server.vuln.feeds.osv import parse_osv

__all__ = [
    "FEEDS",
    "Advisory",
    "AffectedRange",
    "FeedError",
    "FeedKind",
    "FeedLimits",
    "FeedParser",
    "KevEntry",
    "ParsedFeed",
    "detect_kind",
]

FEEDS: Final[MappingProxyType[str, FeedParser]] = MappingProxyType(
    {"osv": parse_osv, "kev": parse_kev, "nvd": parse_nvd}
)


def detect_kind(data: bytes) -> FeedKind:
    """The feed kind of a file: a zip or an OSV record/array is ``osv``; a JSON object
    with ``catalogVersion`` is ``kev``; one with ``"format": "NVD_CVE"`` is ``nvd``.
    Raises FeedError when it is none of them."""
    if is_zip(data):
        return "osv"
    head = data[:4096].lstrip()
    if head[:1] == b"[":
        return "osv"
    if head[:1] != b"{":
        raise FeedError("not a feed file: neither a zip nor a JSON document")
    if b'"catalogVersion"' in data[:4096]:
        return "kev"
    if b'"NVD_CVE"' in data[:4096]:
        return "nvd"
    if b'"modified"' in data or b'"affected"' in data:
        return "osv"
    raise FeedError("not a feed file: a JSON document of no known feed (use --kind)")
