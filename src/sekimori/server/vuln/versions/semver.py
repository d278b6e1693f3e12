"""npm versions: Semantic Versioning 2.0.0 precedence (semver.org §11), as a sort key.

OSV npm ranges are ``SEMVER`` events, so precedence is all matching needs (no npm
range syntax). ``major.minor.patch`` compare numerically; a pre-release sorts before
its release; pre-release identifiers compare one by one (numeric ones numerically and
before alphanumeric ones, which compare as ASCII), a longer list after its prefix;
build metadata (``+…``) is ignored. A leading ``v`` or ``=`` (as npm tolerates) is
dropped.
"""

from __future__ import annotations

import re

__all__ = ["SemverError", "semver_key"]

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)

SemverKey = tuple[int, int, int, tuple[int, tuple[tuple[int, int, str], ...]]]


class SemverError(ValueError):
    """Not a semantic version."""


def semver_key(version: str) -> SemverKey:
    """The precedence key of a semantic version; raises SemverError when malformed."""
    text = version.strip().lstrip("=v")
    m = _SEMVER.match(text)
    if m is None:
        raise SemverError(f"not a semantic version: {version!r}")
    pre = m.group(4)
    if pre is None:
        release: tuple[int, tuple[tuple[int, int, str], ...]] = (1, ())
    else:
        ids = tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")
        )
        release = (0, ids)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), release)
