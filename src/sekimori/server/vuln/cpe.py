"""The CPE product map: which installed software the NVD's CPE ranges may be matched
against. Deliberately small and exact — a (manager, package name) pair appears here
only when the package is that upstream product, under that exact name. No fuzzy
matching and no guessing from names: CPE guessing is the main source of false
positives in other scanners. Packages not listed here are not matched against NVD.

Versions: rpm's ``[epoch:]version-release`` is cut to the upstream ``version``
(distribution backports make this imprecise: hence "low" confidence); snap and
flatpak versions are used as they are when they are dotted numbers.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["CPE_PRODUCTS", "cpe_product", "upstream_version"]

CPE_PRODUCTS: Final[MappingProxyType[tuple[str, str], str]] = MappingProxyType(
    {
        ("rpm", "bash"): "gnu:bash",
        ("rpm", "curl"): "haxx:curl",
        ("rpm", "libcurl"): "haxx:libcurl",
        ("rpm", "firefox"): "mozilla:firefox",
        ("rpm", "git"): "git-scm:git",
        ("rpm", "google-chrome-stable"): "google:chrome",
        ("rpm", "libwebp"): "webmproject:libwebp",
        ("rpm", "openssl"): "openssl:openssl",
        ("rpm", "openssl-libs"): "openssl:openssl",
        ("rpm", "sudo"): "sudo_project:sudo",
        ("rpm", "thunderbird"): "mozilla:thunderbird",
        ("rpm", "xz"): "tukaani:xz",
        ("rpm", "xz-libs"): "tukaani:xz",
        ("snap", "firefox"): "mozilla:firefox",
        ("snap", "thunderbird"): "mozilla:thunderbird",
        ("flatpak", "org.mozilla.firefox"): "mozilla:firefox",
        ("flatpak", "org.mozilla.Thunderbird"): "mozilla:thunderbird",
    }
)


def cpe_product(manager: str, name: str) -> str | None:
    """``vendor:product`` for a package the map knows, else None."""
    return CPE_PRODUCTS.get((manager, name))


def upstream_version(manager: str, version: str) -> str:
    """The upstream part of a package version (rpm: no epoch, no release)."""
    if manager == "rpm":
        _, _, rest = version.rpartition(":")
        return rest.split("-", 1)[0]
    return version.strip()
