"""Matching installed versions against the affected ranges of the feeds.

``Matcher`` holds every imported range, indexed by (ecosystem, package), with the
versions already turned into sort keys, so matching one installed version is a few
tuple comparisons per range of that package. ``hits`` memoizes by (ecosystem,
package, version): a fleet shares most versions, so a full re-match computes each
distinct version once, not once per device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sekimori.server.store.schema import vuln_affected, vulnerabilities
from sekimori.server.vuln.versions import key_for

__all__ = ["Hit", "Matcher"]


@dataclass(frozen=True, slots=True)
class Hit:
    vuln_id: str
    fixed: str | None
    fixed_us: int | None
    feed: str
    confidence: str  # high (OSV) | low (NVD CPE)


@dataclass(frozen=True, slots=True)
class _Range:
    vuln_id: str
    lower: Any
    lower_inclusive: bool
    upper: Any
    upper_inclusive: bool
    fixed: str | None
    fixed_us: int | None
    feed: str

    def contains(self, key: Any) -> bool:
        if self.lower is not None and (
            key < self.lower or (key == self.lower and not self.lower_inclusive)
        ):
            return False
        return (
            self.upper is None or key < self.upper or (key == self.upper and self.upper_inclusive)
        )


Row = tuple[str, str, str, str, bool, str | None, bool, str | None, int | None, str]


class Matcher:
    """Ranges by (ecosystem, package). A package's ranges get their version keys the
    first time one of its versions is looked up: most of a feed (other releases,
    packages no PC has) is never compared at all."""

    def __init__(self, revision: int = 0) -> None:
        self.revision = revision
        self._raw: dict[tuple[str, str], list[Row]] = {}
        self._ranges: dict[tuple[str, str], list[_Range]] = {}
        self._memo: dict[tuple[str, str, str], tuple[Hit, ...]] = {}
        self._keys: dict[str, Callable[[str], Any] | None] = {}

    def _key(self, ecosystem: str) -> Callable[[str], Any] | None:
        if ecosystem not in self._keys:
            try:
                self._keys[ecosystem] = key_for(ecosystem)
            except KeyError:
                self._keys[ecosystem] = None
        return self._keys[ecosystem]

    def add(self, rows: Iterable[Row]) -> int:
        """Add (vuln_id, ecosystem, package, lower, lower_inclusive, upper,
        upper_inclusive, fixed, fixed_us, feed) rows; returns how many."""
        added = 0
        for row in rows:
            self._raw.setdefault((row[1], row[2]), []).append(row)
            self._ranges.pop((row[1], row[2]), None)
            added += 1
        self._memo.clear()
        return added

    def _package_ranges(self, ecosystem: str, package: str) -> list[_Range]:
        built = self._ranges.get((ecosystem, package))
        if built is not None:
            return built
        key = self._key(ecosystem)
        built = []
        for (
            vuln_id,
            _eco,
            _pkg,
            lower,
            lower_inc,
            upper,
            upper_inc,
            fixed,
            fixed_us,
            feed,
        ) in self._raw.get((ecosystem, package), ()):
            if key is None:
                break
            try:
                lo = key(lower) if lower else None
                hi = key(upper) if upper is not None else None
            except ValueError:
                continue  # the parser checked these; a hand-edited row is skipped
            built.append(_Range(vuln_id, lo, lower_inc, hi, upper_inc, fixed, fixed_us, feed))
        self._ranges[(ecosystem, package)] = built
        return built

    @classmethod
    def load(cls, conn: sa.Connection, revision: int = 0) -> Matcher:
        """Build from the store's vuln_affected rows."""
        matcher = cls(revision)
        rows = conn.execute(
            sa.select(
                vuln_affected.c.vuln_id,
                vuln_affected.c.ecosystem,
                vuln_affected.c.package,
                vuln_affected.c.lower,
                vuln_affected.c.lower_inclusive,
                vuln_affected.c.upper,
                vuln_affected.c.upper_inclusive,
                vuln_affected.c.fixed,
                vuln_affected.c.fixed_us,
                vulnerabilities.c.feed,
            ).join(vulnerabilities, vulnerabilities.c.id == vuln_affected.c.vuln_id)
        )
        matcher.add(tuple(row) for row in rows)
        return matcher

    @property
    def packages(self) -> int:
        return len(self._raw)

    def hits(self, ecosystem: str, package: str, version: str) -> tuple[Hit, ...]:
        """The vulnerabilities whose ranges contain ``version`` (one hit per
        vulnerability); empty for a version its ecosystem cannot read."""
        memo_key = (ecosystem, package, version)
        found = self._memo.get(memo_key)
        if found is not None:
            return found
        result: tuple[Hit, ...] = ()
        key_fn = self._key(ecosystem)
        if key_fn is not None and (ecosystem, package) in self._raw:
            ranges = self._package_ranges(ecosystem, package)
            try:
                key = key_fn(version)
            except ValueError:
                key = None
            if key is not None:
                seen: dict[str, Hit] = {}
                for r in ranges:
                    if r.vuln_id not in seen and r.contains(key):
                        seen[r.vuln_id] = Hit(
                            r.vuln_id,
                            r.fixed,
                            r.fixed_us,
                            r.feed,
                            "low" if ecosystem == "cpe" else "high",
                        )
                result = tuple(seen.values())
        self._memo[memo_key] = result
        return result
