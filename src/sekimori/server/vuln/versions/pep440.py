"""PyPI versions: PEP 440 ordering through ``packaging.version`` (the reference
implementation pip uses), and PEP 503 name normalization."""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version

__all__ = ["Pep440Error", "normalize_pypi_name", "pep440_key"]

_SEPARATORS = re.compile(r"[-_.]+")


class Pep440Error(ValueError):
    """Not a PEP 440 version."""


def pep440_key(version: str) -> Version:
    """The comparable version; raises Pep440Error when malformed."""
    try:
        return Version(version)
    except InvalidVersion as exc:
        raise Pep440Error(f"not a PEP 440 version: {version!r}") from exc


def normalize_pypi_name(name: str) -> str:
    """PEP 503: lower case, runs of ``-_.`` become one ``-``."""
    return _SEPARATORS.sub("-", name).lower()
