"""The machine on Linux: CPU, memory, disks, network interfaces, DMI, OS, kernel.

Everything is read from /proc, /sys and os-release (network addresses through
psutil). Each reader takes its root directory as an argument so it can be pointed at
a recorded tree; the defaults are the live system. A value the machine does not
expose (a VM has no DMI, virtio disks have no model) comes back empty or 0, and a
file we may not read (DMI serials are root-only) is treated the same way: the
inventory reports what is there and never fails over one missing detail.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import psutil

from sekimori.protocol.events.inventory import (
    Cpu,
    Disk,
    Dmi,
    Kernel,
    NetworkInterface,
    OperatingSystem,
    Partition,
)

__all__ = [
    "is_virtual_machine",
    "read_cpu",
    "read_disks",
    "read_dmi",
    "read_kernel",
    "read_memory",
    "read_network_interfaces",
    "read_os_release",
]

_SECTOR = 512  # /sys/block/*/size counts 512-byte sectors whatever the disk's own size


def _read(path: Path) -> str:
    """A sysfs/procfs attribute, stripped; "" when absent or unreadable."""
    try:
        return path.read_bytes().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _read_int(path: Path) -> int:
    text = _read(path)
    return int(text) if text.isdecimal() else 0


# ---- CPU and memory --------------------------------------------------------------------


def _cpuinfo_fields(proc: Path) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (plus ARM's global ones)."""
    fields: dict[str, str] = {}
    for line in _read(proc / "cpuinfo").splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in fields:
            fields[key] = value.strip()
    return fields


def read_cpu(proc: Path = Path("/proc"), sysfs: Path = Path("/sys")) -> Cpu:
    info = _cpuinfo_fields(proc)
    # x86: "model name"; ARM: "Model"/"Hardware"; POWER: "cpu"; s390: "machine".
    model = next(
        (info[k] for k in ("model name", "Model", "Hardware", "cpu", "machine") if info.get(k)),
        "",
    )
    vendor = info.get("vendor_id", "") or info.get("CPU implementer", "")
    cpus = sorted((sysfs / "devices/system/cpu").glob("cpu[0-9]*"))
    topology = {
        (_read(c / "topology/physical_package_id"), _read(c / "topology/core_id")) for c in cpus
    }
    threads = len(cpus) or os.cpu_count() or 1
    known = bool(topology) and all(package and core for package, core in topology)
    max_khz = _read_int(sysfs / "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    return Cpu(
        model=model,
        vendor=vendor,
        architecture=os.uname().machine,
        sockets=len({package for package, _ in topology}) if known else 1,
        # Without topology files (some VMs, containers) each thread counts as a core.
        cores=len(topology) if known else threads,
        threads=threads,
        max_mhz=max_khz // 1000,
    )


def is_virtual_machine(proc: Path = Path("/proc")) -> bool:
    """The CPU reports a hypervisor (the "hypervisor" flag every major one sets)."""
    return "hypervisor" in _cpuinfo_fields(proc).get("flags", "").split()


def read_memory(proc: Path = Path("/proc")) -> tuple[int, int]:
    """(RAM, swap) totals in bytes, from /proc/meminfo."""
    values: dict[str, int] = {}
    for line in _read(proc / "meminfo").splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if key in ("MemTotal", "SwapTotal") and words and words[0].isdecimal():
            values[key] = int(words[0]) * 1024  # meminfo's "kB" are KiB
    return values.get("MemTotal", 0), values.get("SwapTotal", 0)


# ---- disks -----------------------------------------------------------------------------


def _vpd_serial(device: Path) -> str:
    """SCSI/SATA unit serial number from VPD page 0x80 (4-byte header, then text)."""
    try:
        page = (device / "vpd_pg80").read_bytes()
    except OSError:
        return ""
    return page[4:].decode("ascii", "replace").strip(" \x00")


def _usb_serial(device: Path) -> str:
    """The serial of the USB device a disk sits on (USB sticks have no VPD page)."""
    try:
        node = device.resolve()
    except OSError:
        return ""
    for parent in list(node.parents)[:8]:
        # The first ancestor with idVendor is the USB device; 1d6b is a root hub,
        # whose "serial" is the host controller's PCI address, not the disk's.
        if (parent / "idVendor").exists():
            if _read(parent / "idVendor") == "1d6b":
                return ""
            return _read(parent / "serial")
    return ""


def read_disks(sysfs: Path = Path("/sys")) -> list[Disk]:
    """Block devices backed by a device, with their partitions.

    Loop, zram, ram and device-mapper devices have no ``device`` link and are left
    out: they are not hardware. Partitions come from /sys/class/block (entries with a
    ``partition`` attribute), attached to the disk they resolve under.
    """
    partitions: dict[str, list[Partition]] = {}
    class_block = sysfs / "class/block"
    entries = sorted(class_block.iterdir()) if class_block.is_dir() else []
    for entry in entries:
        if (entry / "partition").exists():
            disk = entry.resolve().parent.name
            size = _read_int(entry / "size") * _SECTOR
            partitions.setdefault(disk, []).append(Partition(name=entry.name, size_bytes=size))
    disks: list[Disk] = []
    block = sysfs / "block"
    for entry in sorted(block.iterdir()) if block.is_dir() else []:
        device = entry / "device"
        if not device.exists():
            continue
        serial = (
            _read(entry / "serial")  # virtio-blk
            or _read(device / "serial")  # NVMe
            or _vpd_serial(device)  # SCSI, SATA
            or _usb_serial(device)  # USB mass storage
        )
        disks.append(
            Disk(
                name=entry.name,
                model=_read(device / "model"),
                vendor=_read(device / "vendor"),
                serial=serial,
                size_bytes=_read_int(entry / "size") * _SECTOR,
                removable=_read(entry / "removable") == "1",
                rotational=_read(entry / "queue/rotational") == "1",
                partitions=partitions.get(entry.name, []),
            )
        )
    return disks


# ---- DMI -------------------------------------------------------------------------------

# Strings firmware vendors leave in unset SMBIOS fields; reporting them as serials
# would make thousands of PCs look like one.
_PLACEHOLDERS = frozenset(
    s.casefold()
    for s in (
        "To Be Filled By O.E.M.",
        "Default string",
        "Not Specified",
        "Not Applicable",
        "None",
        "N/A",
        "System Serial Number",
        "System Product Name",
        "System manufacturer",
        "System Version",
        "Base Board Serial Number",
        "Chassis Serial Number",
        "0123456789",
        "00000000-0000-0000-0000-000000000000",
        "03000200-0400-0500-0006-000700080009",
    )
)

# SMBIOS 3.x chassis types (the number in chassis_type) that matter to an inventory.
_CHASSIS = {
    1: "Other",
    3: "Desktop",
    4: "Low Profile Desktop",
    6: "Mini Tower",
    7: "Tower",
    8: "Portable",
    9: "Laptop",
    10: "Notebook",
    11: "Hand Held",
    13: "All in One",
    14: "Sub Notebook",
    17: "Main Server Chassis",
    23: "Rack Mount Chassis",
    30: "Tablet",
    31: "Convertible",
    32: "Detachable",
    35: "Mini PC",
    36: "Stick PC",
}


def _dmi_field(dmi: Path, name: str) -> str:
    value = _read(dmi / name)
    return "" if value.casefold() in _PLACEHOLDERS else value


def read_dmi(dmi: Path = Path("/sys/class/dmi/id")) -> Dmi:
    """SMBIOS identity from /sys/class/dmi/id (serials and UUID need root)."""
    chassis = _read(dmi / "chassis_type")
    return Dmi(
        system_vendor=_dmi_field(dmi, "sys_vendor"),
        product_name=_dmi_field(dmi, "product_name"),
        product_version=_dmi_field(dmi, "product_version"),
        product_serial=_dmi_field(dmi, "product_serial"),
        product_uuid=_dmi_field(dmi, "product_uuid"),
        board_vendor=_dmi_field(dmi, "board_vendor"),
        board_name=_dmi_field(dmi, "board_name"),
        board_serial=_dmi_field(dmi, "board_serial"),
        chassis_type=_CHASSIS.get(int(chassis), chassis) if chassis.isdecimal() else chassis,
        bios_vendor=_dmi_field(dmi, "bios_vendor"),
        bios_version=_dmi_field(dmi, "bios_version"),
        bios_date=_dmi_field(dmi, "bios_date"),
    )


# ---- network ---------------------------------------------------------------------------


def _cidr(address: str, netmask: str | None) -> str:
    """ "address/prefix" from psutil's address and netmask (dotted or IPv6 form)."""
    address = address.split("%", 1)[0]  # fe80::1%eth0: the scope is the interface itself
    try:
        ip = ipaddress.ip_address(address)
        if not netmask:
            return str(ip)
        prefix = int(ipaddress.ip_address(netmask)).bit_count()
        return str(ipaddress.ip_interface(f"{ip}/{prefix}"))
    except ValueError:
        return address


def read_network_interfaces(sysfs: Path = Path("/sys")) -> list[NetworkInterface]:
    """Every interface with its MAC, addresses (CIDR), state, MTU and link speed."""
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    out: list[NetworkInterface] = []
    for name in sorted(set(addrs) | set(stats)):
        mac = ""
        addresses: list[str] = []
        for a in addrs.get(name, []):
            if a.family == psutil.AF_LINK:
                mac = a.address
            elif a.family in (socket.AF_INET, socket.AF_INET6):
                addresses.append(_cidr(a.address, a.netmask))
        st = stats.get(name)
        out.append(
            NetworkInterface(
                name=name,
                mac=mac,
                addresses=addresses,
                up=bool(st and st.isup),
                mtu=st.mtu if st else 0,
                speed_mbps=max(st.speed, 0) if st else 0,
                physical=(sysfs / "class/net" / name / "device").exists(),
            )
        )
    return out


# ---- OS and kernel ---------------------------------------------------------------------


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def read_os_release(
    paths: tuple[Path, ...] = (Path("/etc/os-release"), Path("/usr/lib/os-release")),
) -> OperatingSystem:
    """os-release(5): the first file that exists; empty fields if none does."""
    fields: dict[str, str] = {}
    for path in paths:
        text = _read(path)
        if text:
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.startswith("#"):
                    fields[key.strip()] = _unquote(value)
            break
    return OperatingSystem(
        id=fields.get("ID", "linux"),  # os-release(5) defaults ID to "linux"
        name=fields.get("NAME", "Linux"),
        version_id=fields.get("VERSION_ID", ""),
        version=fields.get("VERSION", ""),
        codename=fields.get("VERSION_CODENAME", ""),
        pretty_name=fields.get("PRETTY_NAME", ""),
    )


def read_kernel() -> Kernel:
    uname = os.uname()
    return Kernel(name=uname.sysname, release=uname.release, version=uname.version)
