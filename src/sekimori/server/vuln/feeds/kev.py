"""The CISA Known Exploited Vulnerabilities catalog (JSON, schema
``known_exploited_vulnerabilities_schema.json``).

The catalog is complete in every release, so an import replaces the previous one.
``count`` must equal the number of entries: a catalog cut short in a way that still
parses (a hand-edited or partly copied file) is refused rather than silently
un-flagging the CVEs that were dropped. Unknown fields are allowed (CISA adds some,
``forensicTriage`` for one).
"""

from __future__ import annotations

import re

import msgspec

from sekimori.server.vuln.feeds.base import FeedError, FeedLimits, KevEntry, ParsedFeed
from sekimori.server.vuln.feeds.timestamps import parse_time_us

__all__ = ["parse_kev"]

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")


class KevVulnerability(msgspec.Struct):
    cveID: str  # noqa: N815 - the catalog's field names
    vendorProject: str  # noqa: N815
    product: str
    vulnerabilityName: str  # noqa: N815
    dateAdded: str  # noqa: N815
    dueDate: str | None = None  # noqa: N815
    knownRansomwareCampaignUse: str = "Unknown"  # noqa: N815
    shortDescription: str = ""  # noqa: N815


class KevCatalog(msgspec.Struct):
    catalogVersion: str  # noqa: N815
    dateReleased: str  # noqa: N815
    count: int
    vulnerabilities: list[KevVulnerability]
    title: str = ""


_DECODER = msgspec.json.Decoder(KevCatalog)


def parse_kev(data: bytes, source: str, limits: FeedLimits) -> ParsedFeed:
    """Parse the KEV catalog JSON; raises FeedError naming the entry and field."""
    if len(data) > limits.max_file_bytes:
        raise FeedError(f"the file is larger than {limits.max_file_bytes} bytes")
    try:
        catalog = _DECODER.decode(data)
    except msgspec.MsgspecError as exc:
        raise FeedError(f"KEV catalog {source}: {exc}") from exc
    if catalog.count != len(catalog.vulnerabilities):
        raise FeedError(
            f"KEV catalog {catalog.catalogVersion}: `count` says {catalog.count} entries "
            f"but the file holds {len(catalog.vulnerabilities)} (truncated?)"
        )
    feed = ParsedFeed(kind="kev", records=len(catalog.vulnerabilities))
    seen: set[str] = set()
    for i, entry in enumerate(catalog.vulnerabilities):
        where = f"KEV entry {entry.cveID or i}"
        if not _CVE.match(entry.cveID):
            raise FeedError(f"{where}: field `cveID` is not a CVE id: {entry.cveID!r}")
        if entry.cveID in seen:
            raise FeedError(f"{where}: appears twice")
        seen.add(entry.cveID)
        try:
            added = parse_time_us(entry.dateAdded)
        except ValueError as exc:
            raise FeedError(f"{where}: field `dateAdded`: {exc}") from exc
        try:
            due = parse_time_us(entry.dueDate) if entry.dueDate else None
        except ValueError as exc:
            raise FeedError(f"{where}: field `dueDate`: {exc}") from exc
        feed.kev.append(
            KevEntry(
                cve_id=entry.cveID,
                vendor=entry.vendorProject.strip(),
                product=entry.product.strip(),
                name=entry.vulnerabilityName.strip(),
                date_added_us=added,
                due_date_us=due,
                ransomware=entry.knownRansomwareCampaignUse[:16],
            )
        )
    return feed
