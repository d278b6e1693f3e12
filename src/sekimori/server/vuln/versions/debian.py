"""Debian version ordering (deb-version(7), dpkg's ``verrevcmp``), as a sort key.

``debian_key(v)`` turns a version into a tuple that Python compares exactly as
``dpkg --compare-versions`` does, so a feed's thousands of ranges are compared with
plain tuple comparisons (the matcher's hot path) instead of re-parsing strings.

The rules: ``[epoch:]upstream[-revision]``; epoch numeric (absent = 0); the revision
is what follows the last hyphen (absent = ""). Upstream and revision are compared
alternately by a non-digit run (character by character: ``~`` sorts before
everything, even the end of the string; then the end; then letters; then every other
character, by code) and a digit run (numerically; absent = 0).
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["DebianVersionError", "debian_key"]

_VALID = re.compile(r"^(?:(\d+):)?([A-Za-z0-9.+~:-]+?)(?:-([A-Za-z0-9.+~]+))?$")

# One character's place in a non-digit run; the run ends with _END.
_TILDE = 0
_END = 1
# The end of a version part. It must act as ("", 0) pairs repeated forever: after a
# longer string's pair that starts with "~" (which sorts before the end), before any
# other pair. A 3-tuple does that against the 2-tuple pairs; it never meets the one
# pair it would tie with, ("", 0), because that can only be a part's first pair and
# every key has a real first pair.
_FIRST = ((_END,), 0)
_STOP = ((_END,), 0, 1)


class DebianVersionError(ValueError):
    """Not a Debian version string."""


def _char(c: str) -> int:
    if c == "~":
        return _TILDE
    if c.isalpha():
        return ord(c)  # letters: 65..122
    return ord(c) + 256  # then everything else


_RUNS = re.compile(r"(\D*)(\d*)")


def _part_key(text: str) -> tuple[tuple[Any, ...], ...]:
    pairs: list[tuple[Any, ...]] = [
        ((*map(_char, letters), _END), int(digits) if digits else 0)
        for letters, digits in _RUNS.findall(text)
        if letters or digits
    ]
    if not pairs:
        pairs.append(_FIRST)  # "" compares as "0"
    pairs.append(_STOP)
    return tuple(pairs)


DebianKey = tuple[
    int, tuple[tuple[tuple[int, ...], int], ...], tuple[tuple[tuple[int, ...], int], ...]
]


@functools.lru_cache(maxsize=262_144)
def debian_key(version: str) -> DebianKey:
    """The sort key of a Debian version; raises DebianVersionError when malformed.
    Memoized: a feed repeats the same fixed versions across many records."""
    m = _VALID.match(version.strip())
    if m is None or not m.group(2)[0].isdigit() or m.group(2).endswith("-"):
        raise DebianVersionError(f"not a Debian version: {version!r}")
    epoch = int(m.group(1) or 0)
    upstream = m.group(2)
    revision = m.group(3) or ""
    if ":" in upstream and m.group(1) is None:
        raise DebianVersionError(f"colon in a version without epoch: {version!r}")
    return (epoch, _part_key(upstream), _part_key(revision))
