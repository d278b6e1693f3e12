"""Paths of the real feed records under fixtures/ (see fixtures/README.md)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

__all__ = ["FIXTURES", "KEV", "NVD", "OSV_DIR", "osv_record", "osv_zip"]

FIXTURES = Path(__file__).parent / "fixtures"
OSV_DIR = FIXTURES / "osv"
KEV = FIXTURES / "kev.json"
NVD = FIXTURES / "nvd.json"


def osv_record(name: str) -> bytes:
    return (OSV_DIR / f"{name}.json").read_bytes()


def osv_zip(names: list[str] | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip of OSV records laid out as osv.dev's ``all.zip`` (one ``<ID>.json`` each)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(OSV_DIR.glob("*.json")):
            if (names is None or path.stem in names) and path.name not in (extra or {}):
                archive.writestr(path.name, path.read_bytes())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()
