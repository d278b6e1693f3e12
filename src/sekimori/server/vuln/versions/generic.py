"""Versions of software with no ecosystem of its own (NVD CPE ranges): dotted
numbers, compared field by field numerically. Anything else is refused rather than
guessed — a CPE match is already the low-confidence path."""

from __future__ import annotations

import re

__all__ = ["GenericVersionError", "generic_key"]

_DOTTED = re.compile(r"^\d+(?:\.\d+)*$")


class GenericVersionError(ValueError):
    """Not a dotted numeric version."""


def generic_key(version: str) -> tuple[int, ...]:
    """``"1.10.2"`` → ``(1, 10, 2)`` with trailing zeros dropped (1.0 == 1)."""
    text = version.strip()
    if not _DOTTED.match(text):
        raise GenericVersionError(f"not a dotted numeric version: {version!r}")
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
