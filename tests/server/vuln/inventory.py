"""Inventories for the vulnerability tests, built from a real dpkg status file (this
machine's /var/lib/dpkg/status, Debian 12) and variants of it, and stored as the
agent's inventory events the way ingest stores them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import sqlalchemy as sa

from sekimori.protocol.events.inventory import (
    Cpu,
    Dmi,
    Hardware,
    Kernel,
    OperatingSystem,
    Package,
    SoftwareSnapshot,
)
from tests.console.seed import SeedEvent, add_events

__all__ = [
    "DPKG_STATUS",
    "hardware",
    "read_dpkg_status",
    "store_inventory",
    "with_versions",
]

DPKG_STATUS = Path("/var/lib/dpkg/status")

_OS = {
    ("debian", "12"): ("Debian GNU/Linux", "12 (bookworm)", "bookworm"),
    ("debian", "13"): ("Debian GNU/Linux", "13 (trixie)", "trixie"),
    ("ubuntu", "22.04"): ("Ubuntu", "22.04.5 LTS (Jammy Jellyfish)", "jammy"),
    ("fedora", "40"): ("Fedora Linux", "40 (Workstation Edition)", ""),
}


def read_dpkg_status(path: Path = DPKG_STATUS) -> list[Package]:
    """The installed packages of a dpkg status file, as the agent reports them."""
    packages: list[Package] = []
    for stanza in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "Package" not in fields or not fields.get("Status", "").endswith(" installed"):
            continue
        name, version = fields["Package"], fields.get("Version", "")
        source, source_version = name, version
        if "Source" in fields:
            src = fields["Source"]
            if "(" in src:
                source, _, rest = src.partition(" (")
                source_version = rest.rstrip(")")
            else:
                source = src
        packages.append(
            Package("dpkg", name, version, fields.get("Architecture", ""), source, source_version)
        )
    return packages


def with_versions(packages: Iterable[Package], changes: Mapping[str, str]) -> list[Package]:
    """The same inventory with the binary packages of some *source* packages at other
    versions (``{"pam": "1.5.2-6"}``), as if that source were not upgraded."""
    out = []
    for p in packages:
        if p.source in changes:
            v = changes[p.source]
            out.append(Package(p.manager, p.name, v, p.architecture, p.source, v))
        else:
            out.append(p)
    return out


def hardware(os_id: str = "debian", version_id: str = "12") -> Hardware:
    name, version, codename = _OS[(os_id, version_id)]
    return Hardware(
        hostname="pc",
        cpu=Cpu(model="x", vendor="x", architecture="x86_64", sockets=1, cores=2, threads=2),
        memory_bytes=8 << 30,
        swap_bytes=0,
        disks=[],
        interfaces=[],
        dmi=Dmi(),
        os=OperatingSystem(
            id=os_id,
            name=name,
            version_id=version_id,
            version=version,
            codename=codename,
            pretty_name=f"{name} {version}",
        ),
        kernel=Kernel(name="Linux", release="6.1.0", version="#1 SMP"),
        virtual_machine=False,
    )


def store_inventory(
    engine: sa.Engine,
    device_id: str,
    packages: list[Package],
    *,
    os_id: str = "debian",
    version_id: str = "12",
) -> None:
    """A hardware inventory and a full software list, stored as ingest stores them."""
    managers = sorted({p.manager for p in packages})
    add_events(
        engine,
        device_id,
        [
            SeedEvent("inventory.hardware", hardware(os_id, version_id)),
            SeedEvent(
                "inventory.software",
                SoftwareSnapshot(packages=packages, managers=managers, errors=[]),
            ),
        ],
    )
