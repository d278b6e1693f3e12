"""What every feed parser produces, its one error, and the size limits.

A feed parser is a function ``parse(data, source, limits) -> ParsedFeed`` (see
``FeedParser``): it reads one whole file, validates it against the feed's schema
with msgspec, and returns normalized advisories (and, for KEV, catalog entries).
It never touches the store: the importer writes a ParsedFeed in one transaction, so
a file that fails to parse changes nothing.

Exceptions::

    FeedError             the file is not a valid feed of its kind (permanent:
                          retrying the same bytes cannot help), or — permanent=False —
                          it could not be fetched (a retry may help)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Advisory",
    "AffectedRange",
    "FeedError",
    "FeedKind",
    "FeedLimits",
    "FeedParser",
    "KevEntry",
    "ParsedFeed",
]

FeedKind = Literal["osv", "kev", "nvd"]


class FeedError(Exception):
    """A feed file was refused (or could not be fetched). The message names the
    record and the field where it can."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """Caps against hostile or broken files (zip bombs among them)."""

    # The file as given (a zip or a JSON document).
    max_file_bytes: int = 2 * 1024**3
    # All zip entries together once inflated, and the number of entries.
    max_uncompressed_bytes: int = 8 * 1024**3
    max_entries: int = 2_000_000
    # One OSV record, inflated.
    max_entry_bytes: int = 64 * 1024**2


@dataclass(frozen=True, slots=True)
class AffectedRange:
    """Versions ``lower`` (``""``: from the first) to ``upper`` (None: no end) of
    ``package`` in ``ecosystem`` are affected. ``fixed`` is the version that fixes it
    (None when none does), ``fixed_us`` since when that fix is available."""

    ecosystem: str
    package: str
    lower: str
    lower_inclusive: bool
    upper: str | None
    upper_inclusive: bool
    fixed: str | None
    fixed_us: int | None


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str
    feed: Literal["osv", "nvd"]
    summary: str
    severity: str  # CRITICAL | HIGH | MEDIUM | LOW | NONE | ""
    cvss_score: float | None
    cvss_vector: str | None
    published_us: int | None
    modified_us: int | None
    # CVE ids and other names (not including ``id`` itself).
    aliases: tuple[str, ...]
    ranges: tuple[AffectedRange, ...]
    # Withdrawn/rejected: the importer deletes it.
    withdrawn: bool = False


@dataclass(frozen=True, slots=True)
class KevEntry:
    cve_id: str
    vendor: str
    product: str
    name: str
    date_added_us: int
    due_date_us: int | None
    ransomware: str


@dataclass(slots=True)
class ParsedFeed:
    kind: FeedKind
    # Records read from the file (advisories kept, skipped or withdrawn; KEV entries).
    records: int
    advisories: list[Advisory] = field(default_factory=list)
    kev: list[KevEntry] = field(default_factory=list)
    # Things left out that do not make the file invalid (an ecosystem Sekimori does
    # not match, a version its ecosystem cannot read), counted by reason.
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


FeedParser = Callable[[bytes, str, FeedLimits], ParsedFeed]
