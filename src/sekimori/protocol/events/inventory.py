"""Events of the inventory collector: what the PC is and what is installed on it.

Kinds:

* ``inventory.hardware`` — the machine: CPU, memory, disks, network interfaces, DMI
  (vendor/model/serial/BIOS), OS release and kernel. Sent at agent start and daily.
* ``inventory.software`` — the full list of installed packages (dpkg, rpm, snap,
  flatpak, and the language ecosystems: system-wide Python distributions as "pypi",
  global Node.js packages as "npm"). Sent at agent start and daily.
* ``inventory.software_installed`` / ``inventory.software_removed`` — one package
  appeared / disappeared since the last list the agent knew (even across an agent
  restart: changes made while the agent was down are reported as changes).
* ``inventory.software_upgraded`` / ``inventory.software_downgraded`` — one package
  changed version. Downgraded only where the manager defines a version order (dpkg,
  rpm; pypi by PEP 440 and npm by SemVer when both versions follow them) and the new
  version sorts before the old one; snap and flatpak versions are free-form, so their
  changes are reported as upgraded.

Fields a machine cannot provide (a VM without DMI, a disk without a serial) are empty
strings or 0, never guessed.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from sekimori.protocol.events._base import Payload

__all__ = [
    "KINDS",
    "Cpu",
    "Disk",
    "Dmi",
    "Hardware",
    "Kernel",
    "Manager",
    "NetworkInterface",
    "OperatingSystem",
    "Package",
    "Partition",
    "SoftwareDowngraded",
    "SoftwareInstalled",
    "SoftwareRemoved",
    "SoftwareSnapshot",
    "SoftwareUpgraded",
]

# "pypi": names normalised as in PEP 503 (lower case, runs of -_. as one "-");
# "npm": names as in package.json ("@scope/name"). Both have architecture "" and
# source/source_version equal to name/version.
Manager = Literal["dpkg", "rpm", "snap", "flatpak", "pypi", "npm"]


class _Part(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of the structs nested inside inventory payloads."""


class Cpu(_Part):
    model: str
    vendor: str
    architecture: str
    sockets: int
    cores: int
    threads: int
    max_mhz: int = 0


class Partition(_Part):
    name: str
    size_bytes: int


class Disk(_Part):
    """A block device backed by a device (loop, zram, device-mapper are left out)."""

    name: str
    model: str
    vendor: str
    serial: str
    size_bytes: int
    removable: bool
    rotational: bool
    partitions: list[Partition]


class NetworkInterface(_Part):
    name: str
    mac: str
    # "address/prefix", IPv4 and IPv6 (link-local scope suffixes dropped).
    addresses: list[str]
    up: bool
    mtu: int
    speed_mbps: int
    # Backed by a device (a NIC, a virtio NIC), not a purely virtual one (lo, bridges).
    physical: bool


class Dmi(_Part):
    """SMBIOS identity; empty strings where absent, unreadable or a vendor placeholder."""

    system_vendor: str = ""
    product_name: str = ""
    product_version: str = ""
    product_serial: str = ""
    product_uuid: str = ""
    board_vendor: str = ""
    board_name: str = ""
    board_serial: str = ""
    chassis_type: str = ""
    bios_vendor: str = ""
    bios_version: str = ""
    bios_date: str = ""


class OperatingSystem(_Part):
    """From os-release(5)."""

    id: str
    name: str
    version_id: str
    version: str
    codename: str
    pretty_name: str


class Kernel(_Part):
    name: str
    release: str
    version: str


class Hardware(Payload):
    """``inventory.hardware``: the machine, its OS and kernel."""

    hostname: str
    cpu: Cpu
    memory_bytes: int
    swap_bytes: int
    disks: list[Disk]
    interfaces: list[NetworkInterface]
    dmi: Dmi
    os: OperatingSystem
    kernel: Kernel
    virtual_machine: bool


class Package(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """One installed package, encoded as an array to keep the full list compact.

    ``source``/``source_version`` name the source package (what security trackers
    index); they equal name/version where the manager has no separate source.
    """

    manager: Manager
    name: str
    version: str
    architecture: str
    source: str
    source_version: str


class SoftwareSnapshot(Payload):
    """``inventory.software``: every installed package known to the agent."""

    packages: list[Package]
    # Managers present on the PC and read for this list.
    managers: list[Manager]
    # Managers that could not be read this time, and why; their packages in
    # ``packages`` are the last ones the agent knew. Also, prefixed "skipped", the
    # entries a manager that was read had to leave out (a pypi METADATA or an npm
    # package.json that cannot be parsed): the rest of that manager's list is current.
    errors: list[str]


class _PackageChange(Payload):
    manager: Manager
    name: str
    architecture: str
    version: str
    source: str
    source_version: str


class SoftwareInstalled(_PackageChange):
    """``inventory.software_installed``."""


class SoftwareRemoved(_PackageChange):
    """``inventory.software_removed``: ``version`` is the last one installed."""


class _VersionChange(Payload):
    manager: Manager
    name: str
    architecture: str
    from_version: str
    to_version: str
    source: str
    source_version: str


class SoftwareUpgraded(_VersionChange):
    """``inventory.software_upgraded``: source fields are those of ``to_version``."""


class SoftwareDowngraded(_VersionChange):
    """``inventory.software_downgraded``: the new version sorts before the old one."""


KINDS: Final[dict[str, type[Payload]]] = {
    "inventory.hardware": Hardware,
    "inventory.software": SoftwareSnapshot,
    "inventory.software_installed": SoftwareInstalled,
    "inventory.software_removed": SoftwareRemoved,
    "inventory.software_upgraded": SoftwareUpgraded,
    "inventory.software_downgraded": SoftwareDowngraded,
}
