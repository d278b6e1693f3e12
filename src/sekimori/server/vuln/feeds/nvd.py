"""NVD CVE JSON 2.0 (the API's ``vulnerabilities`` pages and the yearly feed files):
CVSS metrics and CPE configurations.

NVD ranges are used only for software with no OSV ecosystem, through the
conservative product map in ``sekimori.server.vuln.cpe``: from each configuration,
the ``vulnerable`` application (``cpe:2.3:a:``) matches of nodes that are not negated
become intervals — ``versionStartIncluding``/``Excluding`` and
``versionEndIncluding``/``Excluding``, or the exact version in the CPE itself. A match
over every version (``*`` and no bounds) is skipped: it names a product, not the
affected releases, and would flag everything. ``fixed_us`` is the CVE's
``published`` time (NVD does not say when a fix shipped).
"""

from __future__ import annotations

import re

import msgspec

from sekimori.server.vuln.feeds.base import (
    Advisory,
    AffectedRange,
    FeedError,
    FeedLimits,
    ParsedFeed,
)
from sekimori.server.vuln.feeds.cvss import rating
from sekimori.server.vuln.feeds.timestamps import parse_time_us
from sekimori.server.vuln.versions import generic_key

__all__ = ["parse_cpe", "parse_nvd"]

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
# Split a CPE 2.3 formatted string on colons that are not escaped.
_CPE_FIELDS = re.compile(r"(?:\\.|[^:\\])*")


class CpeMatch(msgspec.Struct):
    vulnerable: bool
    criteria: str
    versionStartIncluding: str | None = None  # noqa: N815 - NVD's names
    versionStartExcluding: str | None = None  # noqa: N815
    versionEndIncluding: str | None = None  # noqa: N815
    versionEndExcluding: str | None = None  # noqa: N815


class Node(msgspec.Struct):
    operator: str
    cpeMatch: list[CpeMatch] = msgspec.field(default_factory=list)  # noqa: N815
    negate: bool = False


class Configuration(msgspec.Struct):
    nodes: list[Node]
    operator: str | None = None


class CvssData(msgspec.Struct):
    baseScore: float  # noqa: N815
    vectorString: str  # noqa: N815
    baseSeverity: str | None = None  # noqa: N815


class CvssMetric(msgspec.Struct):
    cvssData: CvssData  # noqa: N815
    type: str = "Primary"


class Metrics(msgspec.Struct):
    cvssMetricV40: list[CvssMetric] = msgspec.field(default_factory=list)  # noqa: N815
    cvssMetricV31: list[CvssMetric] = msgspec.field(default_factory=list)  # noqa: N815
    cvssMetricV30: list[CvssMetric] = msgspec.field(default_factory=list)  # noqa: N815


class Description(msgspec.Struct):
    lang: str
    value: str


class Cve(msgspec.Struct):
    id: str
    published: str
    lastModified: str  # noqa: N815
    vulnStatus: str = ""  # noqa: N815
    descriptions: list[Description] = msgspec.field(default_factory=list)
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    configurations: list[Configuration] = msgspec.field(default_factory=list)


class Item(msgspec.Struct):
    cve: Cve


class NvdFile(msgspec.Struct):
    format: str
    version: str
    vulnerabilities: list[Item]
    resultsPerPage: int | None = None  # noqa: N815
    totalResults: int | None = None  # noqa: N815


_DECODER = msgspec.json.Decoder(NvdFile)


def parse_cpe(criteria: str) -> tuple[str, str, str, str, str] | None:
    """(part, vendor, product, version, update) of a ``cpe:2.3:`` string, or None."""
    if not criteria.startswith("cpe:2.3:"):
        return None
    fields = [f for f in _CPE_FIELDS.findall(criteria[len("cpe:2.3:") :])]
    # findall yields an empty match after each field; keep the fields in order.
    values: list[str] = []
    skip_empty = False
    for f in fields:
        if f == "" and skip_empty:
            skip_empty = False
            continue
        values.append(f)
        skip_empty = True
    if len(values) < 5:
        return None
    return values[0], values[1], values[2], values[3], values[4]


def _metric(metrics: Metrics) -> tuple[float | None, str | None]:
    for group in (metrics.cvssMetricV31, metrics.cvssMetricV30, metrics.cvssMetricV40):
        chosen = next((m for m in group if m.type == "Primary"), group[0] if group else None)
        if chosen is not None:
            return chosen.cvssData.baseScore, chosen.cvssData.vectorString
    return None, None


def _ranges(cve: Cve, fix_us: int, feed: ParsedFeed) -> list[AffectedRange]:
    out: list[AffectedRange] = []
    for config in cve.configurations:
        for node in config.nodes:
            if node.negate:
                continue
            for match in node.cpeMatch:
                if not match.vulnerable:
                    continue
                parsed = parse_cpe(match.criteria)
                if parsed is None:
                    raise FeedError(
                        f"NVD {cve.id}: field `criteria` is not a CPE 2.3 name: {match.criteria!r}"
                    )
                part, vendor, product, version, update = parsed
                if part != "a":
                    continue  # operating systems and hardware: not installed software
                if update not in ("*", "-"):
                    feed.skip("CPE with an update qualifier")
                    continue
                package = f"{vendor}:{product}".lower()
                start = match.versionStartIncluding or match.versionStartExcluding
                end = match.versionEndExcluding or match.versionEndIncluding
                try:
                    if version not in ("*", "-"):
                        generic_key(version)
                        out.append(
                            AffectedRange("cpe", package, version, True, version, True, None, None)
                        )
                        continue
                    if version == "-" or (start is None and end is None):
                        feed.skip("CPE match over every version")
                        continue
                    for bound in (start, end):
                        if bound is not None:
                            generic_key(bound)
                except ValueError:
                    feed.skip("CPE version not dotted numeric")
                    continue
                fixed = match.versionEndExcluding
                out.append(
                    AffectedRange(
                        "cpe",
                        package,
                        start or "",
                        match.versionStartExcluding is None,
                        end,
                        match.versionEndIncluding is not None,
                        fixed,
                        fix_us if fixed is not None else None,
                    )
                )
    return out


def parse_nvd(data: bytes, source: str, limits: FeedLimits) -> ParsedFeed:
    """Parse an NVD CVE JSON 2.0 document; raises FeedError naming the CVE and field."""
    if len(data) > limits.max_file_bytes:
        raise FeedError(f"the file is larger than {limits.max_file_bytes} bytes")
    try:
        document = _DECODER.decode(data)
    except msgspec.MsgspecError as exc:
        raise FeedError(f"NVD file {source}: {exc}") from exc
    if document.format != "NVD_CVE" or not document.version.startswith("2."):
        raise FeedError(
            f"NVD file {source}: format {document.format!r} version {document.version!r} "
            "is not NVD_CVE 2.x"
        )
    if document.resultsPerPage is not None and document.resultsPerPage != len(
        document.vulnerabilities
    ):
        raise FeedError(
            f"NVD file {source}: `resultsPerPage` says {document.resultsPerPage} but the "
            f"file holds {len(document.vulnerabilities)} (truncated?)"
        )
    feed = ParsedFeed(kind="nvd", records=len(document.vulnerabilities))
    for item in document.vulnerabilities:
        cve = item.cve
        if not _CVE.match(cve.id):
            raise FeedError(f"NVD record {cve.id!r}: field `id` is not a CVE id")
        try:
            published = parse_time_us(cve.published)
            modified = parse_time_us(cve.lastModified)
        except ValueError as exc:
            raise FeedError(f"NVD {cve.id}: {exc}") from exc
        score, vector = _metric(cve.metrics)
        summary = next((d.value for d in cve.descriptions if d.lang == "en"), "")
        withdrawn = cve.vulnStatus == "Rejected"
        feed.advisories.append(
            Advisory(
                id=cve.id,
                feed="nvd",
                summary=summary.strip()[:1000],
                severity=rating(score),
                cvss_score=score,
                cvss_vector=vector,
                published_us=published,
                modified_us=modified,
                aliases=(),
                ranges=() if withdrawn else tuple(_ranges(cve, published, feed)),
                withdrawn=withdrawn,
            )
        )
    return feed
