"""OSV (Open Source Vulnerabilities, https://ossf.github.io/osv-schema/): one record
as JSON, a JSON array of records, or a zip of records as osv.dev distributes them.

Only what matching needs is typed (and therefore checked): unknown fields are
allowed, because the schema grows (``upstream`` arrived in 1.7) and a new field must
not make a whole feed unreadable. A field of the wrong type, a missing ``id`` or
``modified``, or a timestamp that is not RFC 3339 refuses the file, naming the record.

Kept ecosystems: ``Debian:<release>``, ``Ubuntu:…`` (including ``Ubuntu:Pro:…``),
``PyPI``, ``npm``. Other ecosystems in an all-ecosystem zip are skipped (counted).

Ranges become intervals by walking the events in version order (introduced opens,
fixed closes exclusive, last_affected closes inclusive, limit is ignored). The
``versions`` list is used only for an affected entry without a usable
ECOSYSTEM/SEMVER range (it repeats what a range says, and Debian records list dozens
of versions each). ``fixed_us`` — since when a fix exists — is the record's
``published`` time (the advisory's release for DSA/DLA/USN/GHSA; an upper bound for
DEBIAN-CVE records), else ``modified``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from sekimori.server.vuln.feeds.archive import is_zip, zip_entries
from sekimori.server.vuln.feeds.base import (
    Advisory,
    AffectedRange,
    FeedError,
    FeedLimits,
    ParsedFeed,
)
from sekimori.server.vuln.feeds.cvss import cvss3_base_score, rating
from sekimori.server.vuln.feeds.timestamps import parse_time_us
from sekimori.server.vuln.versions import key_for, normalize_pypi_name

__all__ = ["kept_ecosystem", "parse_osv"]


class OsvEvent(msgspec.Struct):
    introduced: str | None = None
    fixed: str | None = None
    last_affected: str | None = None
    limit: str | None = None


class OsvRange(msgspec.Struct):
    type: str
    events: list[OsvEvent]


class OsvPackage(msgspec.Struct):
    ecosystem: str
    name: str


class OsvAffected(msgspec.Struct):
    package: OsvPackage | None = None
    ranges: list[OsvRange] = msgspec.field(default_factory=list)
    versions: list[str] = msgspec.field(default_factory=list)


class OsvSeverity(msgspec.Struct):
    type: str
    score: str


class OsvRecord(msgspec.Struct):
    id: str
    modified: str
    published: str | None = None
    withdrawn: str | None = None
    aliases: list[str] | None = None
    upstream: list[str] | None = None
    summary: str | None = None
    details: str | None = None
    severity: list[OsvSeverity] | None = None
    affected: list[OsvAffected] | None = None
    database_specific: dict[str, Any] | None = None


class _IdOnly(msgspec.Struct):
    id: str


_RECORD = msgspec.json.Decoder(OsvRecord)
_RECORDS = msgspec.json.Decoder(list[OsvRecord])
_SEVERITY_WORDS = {
    "CRITICAL": "CRITICAL",
    "HIGH": "HIGH",
    "MODERATE": "MEDIUM",
    "MEDIUM": "MEDIUM",
    "LOW": "LOW",
    "NEGLIGIBLE": "LOW",
}


def kept_ecosystem(ecosystem: str) -> bool:
    return ecosystem.startswith(("Debian:", "Ubuntu:")) or ecosystem in ("PyPI", "npm")


def _name(data: bytes, fallback: str) -> str:
    try:
        return msgspec.json.decode(data, type=_IdOnly).id
    except msgspec.MsgspecError:
        return fallback


def _records(data: bytes, source: str, limits: FeedLimits) -> Iterator[tuple[str, OsvRecord]]:
    if is_zip(data):
        for name, content in zip_entries(data, limits):
            try:
                yield name, _RECORD.decode(content)
            except msgspec.MsgspecError as exc:
                raise FeedError(f"OSV record {_name(content, name)} ({name}): {exc}") from exc
        return
    stripped = data.lstrip()
    try:
        if stripped[:1] == b"[":
            for i, record in enumerate(_RECORDS.decode(data)):
                yield f"{source}[{i}]", record
        else:
            yield source, _RECORD.decode(data)
    except msgspec.MsgspecError as exc:
        raise FeedError(f"OSV record {_name(data, source)}: {exc}") from exc


def _time(record: OsvRecord, field: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_time_us(value)
    except ValueError as exc:
        raise FeedError(f"OSV record {record.id}: field `{field}`: {exc}") from exc


def _severity(record: OsvRecord) -> tuple[str, float | None, str | None]:
    for sev in record.severity or ():
        if sev.type in ("CVSS_V3", "CVSS_V31"):
            score = cvss3_base_score(sev.score)
            if score is not None:
                return rating(score), score, sev.score
    for sev in record.severity or ():
        if sev.type == "Ubuntu" and sev.score.upper() in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[sev.score.upper()], None, None
    word = (record.database_specific or {}).get("severity")
    if isinstance(word, str) and word.upper() in _SEVERITY_WORDS:
        return _SEVERITY_WORDS[word.upper()], None, None
    return "", None, None


def _intervals(
    events: list[OsvEvent], key: Callable[[str], Any]
) -> list[tuple[str, str | None, bool, str | None]]:
    """(lower, upper, upper_inclusive, fixed) per affected interval; raises ValueError
    for a version ``key`` cannot read."""
    points: list[tuple[Any, int, str, str]] = []
    for event in events:
        for kind, order, value in (
            ("introduced", 0, event.introduced),
            ("fixed", 1, event.fixed),
            ("last_affected", 1, event.last_affected),
        ):
            if value is None:
                continue
            if kind == "introduced" and value == "0":
                points.append(((0,), order, kind, ""))
            else:
                points.append(((1, key(value)), order, kind, value))
    points.sort(key=lambda p: (p[0], p[1]))
    out: list[tuple[str, str | None, bool, str | None]] = []
    start: str | None = None
    for _, _, kind, value in points:
        if kind == "introduced":
            if start is None:
                start = value
        elif start is not None:
            if kind == "fixed":
                out.append((start, value, False, value))
            else:
                out.append((start, value, True, None))
            start = None
    if start is not None:
        out.append((start, None, False, None))
    return out


def _affected(record: OsvRecord, fix_us: int | None, feed: ParsedFeed) -> list[AffectedRange]:
    ranges: list[AffectedRange] = []
    for affected in record.affected or ():
        if affected.package is None:
            feed.skip("affected entry without a package")
            continue
        ecosystem = affected.package.ecosystem
        if not kept_ecosystem(ecosystem):
            feed.skip(f"ecosystem {ecosystem.split(':')[0]} not matched")
            continue
        key = key_for(ecosystem)
        name = affected.package.name
        package = normalize_pypi_name(name) if ecosystem == "PyPI" else name
        usable = [r for r in affected.ranges if r.type in ("ECOSYSTEM", "SEMVER")]
        try:
            if usable:
                for osv_range in usable:
                    for lower, upper, inclusive, fixed in _intervals(osv_range.events, key):
                        ranges.append(
                            AffectedRange(
                                ecosystem,
                                package,
                                lower,
                                True,
                                upper,
                                inclusive,
                                fixed,
                                fix_us if fixed is not None else None,
                            )
                        )
            else:
                for version in affected.versions:
                    key(version)
                    ranges.append(
                        AffectedRange(ecosystem, package, version, True, version, True, None, None)
                    )
        except ValueError:
            # A version its own ecosystem cannot order (a legacy PyPI version): this
            # entry cannot be matched reliably, the rest of the feed can.
            feed.skip(f"unreadable {ecosystem.split(':')[0]} version")
            continue
    return ranges


def parse_osv(data: bytes, source: str, limits: FeedLimits) -> ParsedFeed:
    """Parse an OSV JSON record, a JSON array of records, or a zip of records."""
    if len(data) > limits.max_file_bytes:
        raise FeedError(f"the file is larger than {limits.max_file_bytes} bytes")
    feed = ParsedFeed(kind="osv", records=0)
    seen: set[str] = set()
    for _name_in_file, record in _records(data, source, limits):
        feed.records += 1
        if not record.id.strip():
            raise FeedError(f"OSV record in {_name_in_file}: field `id` is empty")
        if record.id in seen:
            raise FeedError(f"OSV record {record.id}: appears twice in the file")
        seen.add(record.id)
        modified = _time(record, "modified", record.modified)
        published = _time(record, "published", record.published)
        withdrawn = _time(record, "withdrawn", record.withdrawn) is not None
        ranges = [] if withdrawn else _affected(record, published or modified, feed)
        if not withdrawn and not ranges:
            continue  # nothing Sekimori can match (another ecosystem)
        severity, score, vector = _severity(record)
        aliases = {a for a in (*(record.aliases or ()), *(record.upstream or ())) if a}
        aliases.discard(record.id)
        summary = record.summary or (record.details or "").strip().split("\n", 1)[0]
        feed.advisories.append(
            Advisory(
                id=record.id,
                feed="osv",
                summary=summary[:1000],
                severity=severity,
                cvss_score=score,
                cvss_vector=vector,
                published_us=published,
                modified_us=modified,
                aliases=tuple(sorted(aliases)),
                ranges=tuple(ranges),
                withdrawn=withdrawn,
            )
        )
    if feed.records == 0:
        raise FeedError("the file holds no OSV records")
    return feed
