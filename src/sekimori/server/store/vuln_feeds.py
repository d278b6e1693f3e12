"""Writing vulnerability feeds into the store: one transaction per import.

``write_feed`` stores a parsed feed and records the import in the same transaction,
so an import is all or nothing. OSV and NVD imports replace the records the file
names (their aliases and ranges with them) and keep the others — a Debian zip does
not remove PyPI records; a withdrawn or rejected record is deleted. A KEV import
replaces the whole catalog. After either, the known-exploited flags on
``vulnerabilities`` are recomputed from the catalog through ids and aliases.
``record_failed_import`` keeps the reason a file was refused (its own transaction:
the refused data itself changed nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from sekimori.server.store.schema import (
    kev_entries,
    vuln_affected,
    vuln_aliases,
    vuln_feed_imports,
    vulnerabilities,
)
from sekimori.server.vuln.feeds.base import ParsedFeed

__all__ = [
    "ImportRecord",
    "feed_revision",
    "record_failed_import",
    "refresh_known_exploited",
    "write_feed",
]

_CHUNK = 500
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ImportRecord:
    id: int
    kind: str
    records: int
    advisories: int
    ranges: int
    kev_entries: int
    message: str


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert_many(conn: sa.Connection, table: sa.Table, rows: Iterable[dict[str, Any]]) -> int:
    batch: list[dict[str, Any]] = []
    count = 0
    for row in rows:
        batch.append(row)
        if len(batch) >= 5000:
            conn.execute(sa.insert(table), batch)
            count += len(batch)
            batch = []
    if batch:
        conn.execute(sa.insert(table), batch)
        count += len(batch)
    return count


def _skipped_message(feed: ParsedFeed) -> str:
    if not feed.skipped:
        return ""
    parts = [f"{reason}: {n}" for reason, n in sorted(feed.skipped.items())]
    return "skipped " + "; ".join(parts)


def refresh_known_exploited(conn: sa.Connection) -> int:
    """Set ``known_exploited``/``kev_added_us`` on every vulnerability from the KEV
    catalog (by id or alias); returns how many are flagged."""
    kev = dict(conn.execute(sa.select(kev_entries.c.cve_id, kev_entries.c.date_added_us)).all())
    conn.execute(
        sa.update(vulnerabilities)
        .where(vulnerabilities.c.known_exploited.is_(True))
        .values(known_exploited=False, kev_added_us=None)
    )
    if not kev:
        return 0
    flagged: dict[str, int] = {}
    ids = sorted(kev)
    for chunk in _chunks(ids):
        for vuln_id in conn.execute(
            sa.select(vulnerabilities.c.id).where(vulnerabilities.c.id.in_(chunk))
        ).scalars():
            flagged[vuln_id] = min(flagged.get(vuln_id, kev[vuln_id]), kev[vuln_id])
        for vuln_id, alias in conn.execute(
            sa.select(vuln_aliases.c.vuln_id, vuln_aliases.c.alias).where(
                vuln_aliases.c.alias.in_(chunk)
            )
        ).all():
            flagged[vuln_id] = min(flagged.get(vuln_id, kev[alias]), kev[alias])
    for vuln_id, added in flagged.items():
        conn.execute(
            sa.update(vulnerabilities)
            .where(vulnerabilities.c.id == vuln_id)
            .values(known_exploited=True, kev_added_us=added)
        )
    return len(flagged)


def _write_advisories(conn: sa.Connection, feed: ParsedFeed) -> tuple[int, int]:
    ids = [a.id for a in feed.advisories]
    for chunk in _chunks(ids):
        conn.execute(sa.delete(vuln_affected).where(vuln_affected.c.vuln_id.in_(chunk)))
        conn.execute(sa.delete(vuln_aliases).where(vuln_aliases.c.vuln_id.in_(chunk)))
        conn.execute(sa.delete(vulnerabilities).where(vulnerabilities.c.id.in_(chunk)))
    kept = [a for a in feed.advisories if not a.withdrawn]
    _insert_many(
        conn,
        vulnerabilities,
        (
            {
                "id": a.id,
                "feed": a.feed,
                "summary": a.summary,
                "severity": a.severity,
                "cvss_score": a.cvss_score,
                "cvss_vector": a.cvss_vector,
                "published_us": a.published_us,
                "modified_us": a.modified_us,
                "known_exploited": False,
                "kev_added_us": None,
            }
            for a in kept
        ),
    )
    _insert_many(
        conn,
        vuln_aliases,
        ({"vuln_id": a.id, "alias": alias} for a in kept for alias in a.aliases),
    )
    ranges = _insert_many(
        conn,
        vuln_affected,
        (
            {
                "vuln_id": a.id,
                "ecosystem": r.ecosystem,
                "package": r.package,
                "lower": r.lower,
                "lower_inclusive": r.lower_inclusive,
                "upper": r.upper,
                "upper_inclusive": r.upper_inclusive,
                "fixed": r.fixed,
                "fixed_us": r.fixed_us,
            }
            for a in kept
            for r in a.ranges
        ),
    )
    return len(kept), ranges


def write_feed(
    engine: sa.Engine,
    feed: ParsedFeed,
    *,
    source: str,
    sha256: str,
    imported_by: str,
    now_us: int,
) -> ImportRecord:
    """Store ``feed`` and record the import, in one transaction."""
    with engine.begin() as conn:
        advisories = ranges = kev = 0
        if feed.kind == "kev":
            conn.execute(sa.delete(kev_entries))
            kev = _insert_many(
                conn,
                kev_entries,
                (
                    {
                        "cve_id": e.cve_id,
                        "vendor": e.vendor[:255],
                        "product": e.product[:255],
                        "name": e.name,
                        "date_added_us": e.date_added_us,
                        "due_date_us": e.due_date_us,
                        "ransomware": e.ransomware,
                    }
                    for e in feed.kev
                ),
            )
        else:
            advisories, ranges = _write_advisories(conn, feed)
        refresh_known_exploited(conn)
        message = _skipped_message(feed)
        result = conn.execute(
            sa.insert(vuln_feed_imports).values(
                kind=feed.kind,
                source=source[:1024],
                imported_us=now_us,
                records=feed.records,
                sha256=sha256,
                status="ok",
                message=message,
                imported_by=imported_by,
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # noqa: S101 - an INSERT returns its key
    return ImportRecord(int(key[0]), feed.kind, feed.records, advisories, ranges, kev, message)


def record_failed_import(
    engine: sa.Engine,
    *,
    kind: str,
    source: str,
    sha256: str,
    message: str,
    imported_by: str,
    now_us: int,
) -> None:
    """Keep the reason an import was refused (shown by the feed status)."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(vuln_feed_imports).values(
                kind=kind,
                source=source[:1024],
                imported_us=now_us,
                records=0,
                sha256=sha256,
                status="failed",
                message=message[:4000],
                imported_by=imported_by,
            )
        )


def feed_revision(conn: sa.Connection) -> int:
    """The id of the newest good OSV or NVD import (what findings are matched
    against); 0 before any. KEV imports change flags only, not matches."""
    value = conn.execute(
        sa.select(sa.func.max(vuln_feed_imports.c.id)).where(
            vuln_feed_imports.c.status == "ok", vuln_feed_imports.c.kind.in_(["osv", "nvd"])
        )
    ).scalar()
    return int(value or 0)
