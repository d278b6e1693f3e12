"""Synthetic data for ``sekimori bench vuln``: a Debian OSV feed of the real one's size
and shape, and a fleet of Debian 12 PCs, both deterministic.

Feed (there is no internet here, so the real Debian zip cannot be fetched): ``records``
``DEBIAN-CVE-*`` records over 2,500 source packages, spread by a Zipf law (exponent
0.8: the most affected package — think ``linux`` — has ~2,400 records, most have a
handful), each with a range for Debian:11, Debian:12 and Debian:13 as the real export
has. In Debian:12, 1.2 % of the records have no fix ("introduced 0" only, as unfixed
and ``unimportant`` issues are exported); 1 % are fixed by one of the two newest
security updates of their package (what lagging PCs miss); the rest were fixed long
ago. Versions look like Debian's: ``1.<n>.<m>-<r>+deb12u<k>``.

Fleet: ``devices`` PCs with ``packages`` binary packages each, two binaries per source
package, from the 1,000 most affected sources (popular software is both installed and
well researched). Each PC is current on 80 % of its source packages, one security
update behind on 15 %, two behind on 5 % (chosen per PC and package by a hash).
That gives ~470 open findings per PC (~4.7 M for 10,000 PCs) — the order a real
bookworm desktop shows in the Debian security tracker, unimportant issues included.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["SOURCES", "Catalog", "catalog", "feed_zip"]

SOURCES = 2_500
INSTALLED_SOURCES = 1_000
_ZIPF = 0.8


@dataclass(frozen=True, slots=True)
class SourcePackage:
    rank: int
    name: str
    upstream: str
    updates: int  # the newest +deb12uN

    def version(self, update: int, release: int = 12) -> str:
        return f"{self.upstream}+deb{release}u{update}"


@dataclass(frozen=True, slots=True)
class Catalog:
    sources: list[SourcePackage]

    def installed(self, packages: int) -> list[tuple[str, SourcePackage]]:
        """(binary name, source) of the ``packages`` binaries every PC has."""
        out: list[tuple[str, SourcePackage]] = []
        per_source = max(1, packages // INSTALLED_SOURCES)
        for source in self.sources[:INSTALLED_SOURCES]:
            for j in range(per_source):
                if len(out) < packages:
                    out.append((f"{source.name}-bin{j}", source))
        return out


def catalog() -> Catalog:
    sources = [
        SourcePackage(
            rank=i,
            name=f"src{i:04d}",
            upstream=f"1.{i % 50}.{i % 7}-{1 + i % 4}",
            updates=3 + i % 5,
        )
        for i in range(SOURCES)
    ]
    return Catalog(sources)


def _records(count: int, cat: Catalog, seed: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    weights = [1.0 / (rank + 1) ** _ZIPF for rank in range(SOURCES)]
    picks = rng.choices(cat.sources, weights=weights, k=count)
    for k, source in enumerate(picks):
        year = 2005 + k % 21
        vuln_id = f"DEBIAN-CVE-{year}-{10000 + k}"
        roll = rng.random()
        if roll < 0.012:
            events12: list[dict[str, str]] = [{"introduced": "0"}]
        elif roll < 0.017:
            events12 = [{"introduced": "0"}, {"fixed": source.version(source.updates)}]
        elif roll < 0.022:
            events12 = [{"introduced": "0"}, {"fixed": source.version(source.updates - 1)}]
        else:
            events12 = [
                {"introduced": "0"},
                {"fixed": source.version(rng.randint(0, source.updates - 2))},
            ]
        record = {
            "schema_version": "1.9.0",
            "id": vuln_id,
            "published": f"{year}-0{1 + k % 9}-1{k % 10}T05:00:00Z",
            "modified": "2026-11-20T06:47:27.362781733Z",
            "upstream": [vuln_id.removeprefix("DEBIAN-")],
            "details": f"Synthetic record {k} for the matching benchmark.",
            "affected": [
                {
                    "package": {"name": source.name, "ecosystem": f"Debian:{release}"},
                    "ranges": [
                        {
                            "type": "ECOSYSTEM",
                            "events": events12
                            if release == 12
                            else [{"introduced": "0"}, {"fixed": source.version(1, release)}],
                        }
                    ],
                    "ecosystem_specific": {"urgency": "not yet assigned"},
                }
                for release in (11, 12, 13)
            ],
        }
        yield f"{vuln_id}.json", json.dumps(record).encode()


def feed_zip(records: int, cat: Catalog, seed: int = 8) -> bytes:
    """The synthetic feed as osv.dev ships it: a zip of ``<ID>.json`` records."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in _records(records, cat, seed):
            archive.writestr(name, data)
    return buffer.getvalue()
