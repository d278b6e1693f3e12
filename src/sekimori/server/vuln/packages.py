"""How an installed package is matched: the OSV ecosystem of a device's OS release,
and the (ecosystem, package, version) a package is looked up under.

* dpkg (Debian, Ubuntu): the *source* package and source version under the release's
  ecosystem (``Debian:12``, ``Ubuntu:22.04:LTS``) — security trackers index source
  packages, and each release has its own fixed version.
* pypi: ``PyPI`` and the PEP 503 name; npm: ``npm`` and the package.json name.
* anything else (rpm, snap, flatpak, unknown managers): ``cpe`` and the product from
  the CPE map, or not matched at all.
"""

from __future__ import annotations

import re

from sekimori.server.vuln.cpe import cpe_product, upstream_version
from sekimori.server.vuln.versions import normalize_pypi_name

__all__ = ["MatchKey", "match_key", "release_ecosystem"]

MatchKey = tuple[str, str, str]

_UBUNTU = re.compile(r"^(\d{2})\.(\d{2})$")


def release_ecosystem(os_id: str, version_id: str) -> str:
    """The OSV ecosystem of an os-release(5) ID and VERSION_ID; "" when no feed
    covers it (Debian testing/unstable have no VERSION_ID, other distributions)."""
    os_id = os_id.strip().lower()
    version_id = version_id.strip()
    if os_id == "debian":
        major = version_id.split(".", 1)[0]
        return f"Debian:{major}" if major.isdigit() else ""
    if os_id == "ubuntu":
        m = _UBUNTU.match(version_id)
        if m is None:
            return ""
        # LTS releases are the April releases of even years (22.04, 24.04 ...).
        lts = m.group(2) == "04" and int(m.group(1)) % 2 == 0
        return f"Ubuntu:{version_id}:LTS" if lts else f"Ubuntu:{version_id}"
    return ""


def match_key(
    manager: str,
    name: str,
    *,
    version: str,
    source: str,
    source_version: str,
    release: str,
) -> MatchKey | None:
    """What a package is matched under, or None when nothing can match it."""
    if manager == "dpkg":
        if not release:
            return None
        return (release, source or name, source_version or version)
    if manager == "pypi":
        return ("PyPI", normalize_pypi_name(name), version)
    if manager == "npm":
        return ("npm", name, version)
    product = cpe_product(manager, name)
    if product is None:
        return None
    return ("cpe", product, upstream_version(manager, version))
