"""Version ordering per ecosystem: one sort-key function each, and ``key_for`` to
pick it. A key function raises a ``ValueError`` subclass for a version its scheme
cannot read; the caller decides whether that skips a range or a package."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sekimori.server.vuln.versions.debian import DebianVersionError, debian_key
from sekimori.server.vuln.versions.generic import GenericVersionError, generic_key
from sekimori.server.vuln.versions.pep440 import Pep440Error, normalize_pypi_name, pep440_key
from sekimori.server.vuln.versions.semver import SemverError, semver_key

__all__ = [
    "DebianVersionError",
    "GenericVersionError",
    "Pep440Error",
    "SemverError",
    "debian_key",
    "generic_key",
    "key_for",
    "normalize_pypi_name",
    "pep440_key",
    "semver_key",
]


def key_for(ecosystem: str) -> Callable[[str], Any]:
    """The sort-key function of an ecosystem ("Debian:12", "Ubuntu:…", "PyPI", "npm",
    "cpe"); raises KeyError for one Sekimori does not match."""
    if ecosystem.startswith(("Debian:", "Ubuntu:")):
        return debian_key
    if ecosystem == "PyPI":
        return pep440_key
    if ecosystem == "npm":
        return semver_key
    if ecosystem == "cpe":
        return generic_key
    raise KeyError(ecosystem)
