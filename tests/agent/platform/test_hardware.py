"""Hardware readers, on this machine's real /proc and /sys, and on recorded trees.

The real-system tests check sane values and cross-check against other tools
(psutil, lsblk, uname, Python's os-release parser). This machine is a VM without
DMI (/sys/class/dmi/id is absent), with one virtio disk and no partitions, SATA,
NVMe or USB disks; those formats are tested on small recorded /sys trees written
by the tests, laid out (with the same symlinks) as the kernel lays them out.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import psutil

from sekimori.agent.platform.linux.hardware import (
    is_virtual_machine,
    read_cpu,
    read_disks,
    read_dmi,
    read_kernel,
    read_memory,
    read_network_interfaces,
    read_os_release,
)
from sekimori.protocol.events.inventory import Dmi, Partition

# ---- the real machine ------------------------------------------------------------------


def test_cpu_of_this_machine() -> None:
    cpu = read_cpu()
    assert cpu.threads == os.cpu_count()
    assert 1 <= cpu.cores <= cpu.threads
    assert cpu.cores == psutil.cpu_count(logical=False)
    assert cpu.sockets >= 1
    assert cpu.architecture == platform.machine()
    if cpu.architecture == "x86_64":
        assert cpu.model
        assert cpu.vendor in ("GenuineIntel", "AuthenticAMD", "HygonGenuine")


def test_memory_of_this_machine() -> None:
    memory, swap = read_memory()
    assert memory == psutil.virtual_memory().total
    assert memory > 0
    assert swap == psutil.swap_memory().total


def test_disks_of_this_machine_match_lsblk() -> None:
    disks = read_disks()
    assert disks, "a machine with no disk"
    lsblk = subprocess.run(
        ["lsblk", "--bytes", "--nodeps", "--noheadings", "--output", "NAME,SIZE"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sizes = dict(line.split() for line in lsblk.splitlines())
    for disk in disks:
        assert disk.size_bytes == int(sizes[disk.name]), disk
        assert not disk.name.startswith(("loop", "zram", "ram", "dm-"))
        for part in disk.partitions:
            assert part.name.startswith(disk.name)
            assert 0 < part.size_bytes <= disk.size_bytes


def test_network_interfaces_of_this_machine() -> None:
    interfaces = {i.name: i for i in read_network_interfaces()}
    lo = interfaces["lo"]
    assert lo.up
    assert "127.0.0.1/8" in lo.addresses
    assert not lo.physical
    assert set(interfaces) == set(psutil.net_if_addrs()) | set(psutil.net_if_stats())
    for iface in interfaces.values():
        for address in iface.addresses:
            assert "/" in address and "%" not in address, address
        if iface.name != "lo" and iface.mac:
            assert len(iface.mac.split(":")) == 6


def test_os_and_kernel_of_this_machine() -> None:
    system = read_os_release()
    expected = platform.freedesktop_os_release()
    assert system.id == expected["ID"]
    assert system.pretty_name == expected.get("PRETTY_NAME", "")
    assert system.version_id == expected.get("VERSION_ID", "")
    kernel = read_kernel()
    assert kernel.release == platform.release()
    assert kernel.name == "Linux"


def test_dmi_absent_gives_empty_fields(tmp_path: Path) -> None:
    """This VM has no DMI at all; the reader then reports nothing, not an error."""
    assert read_dmi(tmp_path / "no-such-dir") == Dmi()
    assert isinstance(is_virtual_machine(), bool)


# ---- recorded trees --------------------------------------------------------------------


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text + "\n")


def test_dmi_of_a_recorded_laptop(tmp_path: Path) -> None:
    """Recorded /sys/class/dmi/id of a ThinkPad, plus placeholder junk from a desktop
    board (which must not become a serial shared by thousands of PCs)."""
    dmi = tmp_path / "dmi"
    for name, value in {
        "sys_vendor": "LENOVO",
        "product_name": "20XW0055GE",
        "product_version": "ThinkPad X1 Carbon Gen 9",
        "product_serial": "PF2ABCDE",
        "product_uuid": "4c4c4544-0043-3510-8052-b4c04f4e3732",
        "board_vendor": "LENOVO",
        "board_name": "20XW0055GE",
        "board_serial": "To be filled by O.E.M.",
        "chassis_type": "10",
        "bios_vendor": "LENOVO",
        "bios_version": "N32ET86W (1.62 )",
        "bios_date": "05/16/2023",
    }.items():
        _write(dmi / name, value)
    assert read_dmi(dmi) == Dmi(
        system_vendor="LENOVO",
        product_name="20XW0055GE",
        product_version="ThinkPad X1 Carbon Gen 9",
        product_serial="PF2ABCDE",
        product_uuid="4c4c4544-0043-3510-8052-b4c04f4e3732",
        board_vendor="LENOVO",
        board_name="20XW0055GE",
        board_serial="",
        chassis_type="Notebook",
        bios_vendor="LENOVO",
        bios_version="N32ET86W (1.62 )",
        bios_date="05/16/2023",
    )
    _write(dmi / "chassis_type", "99")
    (dmi / "product_serial").unlink()
    (dmi / "product_uuid").unlink()
    (dmi / "product_uuid").mkdir()  # unreadable as a file: treated as absent
    result = read_dmi(dmi)
    assert (result.chassis_type, result.product_serial, result.product_uuid) == ("99", "", "")


def _sys_tree(root: Path) -> Path:
    """A recorded /sys layout: SATA disk with two partitions, NVMe, USB stick, loop."""
    sysfs = root / "sys"
    dev = sysfs / "devices"
    sata = dev / "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0"
    _write(sata / "model", "Samsung SSD 870 ")
    _write(sata / "vendor", "ATA     ")
    _write(sata / "vpd_pg80", b"\x00\x80\x00\x14S5Y1NJ0R123456A     ")
    _write(sata / "block/sda/size", "1953525168")
    _write(sata / "block/sda/removable", "0")
    _write(sata / "block/sda/queue/rotational", "0")
    for name, size in (("sda1", "1048576"), ("sda2", "1952474767")):
        _write(sata / "block/sda" / name / "size", size)
        _write(sata / "block/sda" / name / "partition", name[-1])
    nvme = dev / "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0"
    _write(nvme / "model", "WDC PC SN730 SDBQNTY-512G-1001")
    _write(nvme / "serial", "21043Q801234        ")
    _write(nvme / "nvme0n1/size", "1000215216")
    _write(nvme / "nvme0n1/removable", "0")
    _write(nvme / "nvme0n1/queue/rotational", "0")
    usb = dev / "pci0000:00/0000:00:14.0/usb2/2-1"
    _write(usb.parent / "idVendor", "1d6b")  # the root hub
    _write(usb.parent / "serial", "0000:00:14.0")
    _write(usb / "idVendor", "0781")
    _write(usb / "serial", "4C530001230101117054")
    stick = usb / "2-1:1.0/host2/target2:0:0/2:0:0:0"
    _write(stick / "model", "Cruzer Blade    ")
    _write(stick / "vendor", "SanDisk ")
    _write(stick / "block/sdb/size", "60063744")
    _write(stick / "block/sdb/removable", "1")
    _write(stick / "block/sdb/queue/rotational", "1")
    _write(dev / "virtual/block/loop0/size", "0")
    block = sysfs / "block"
    block.mkdir()
    # name: (the block device's directory, the device it sits on)
    links = {
        "sda": (sata / "block/sda", sata),
        "nvme0n1": (nvme / "nvme0n1", nvme),
        "sdb": (stick / "block/sdb", stick),
        "loop0": (dev / "virtual/block/loop0", None),
    }
    class_block = sysfs / "class/block"
    class_block.mkdir(parents=True)
    for name, (target, device) in links.items():
        (block / name).symlink_to(os.path.relpath(target, block))
        (class_block / name).symlink_to(os.path.relpath(target, class_block))
        if device is not None:
            (target / "device").symlink_to(os.path.relpath(device, target))
    for name in ("sda1", "sda2"):
        target = sata / "block/sda" / name
        (class_block / name).symlink_to(os.path.relpath(target, class_block))
    return sysfs


def test_disks_of_a_recorded_sys_tree(tmp_path: Path) -> None:
    """SATA (serial from VPD page 0x80), NVMe (controller serial), a USB stick (serial
    of its USB device, not of the root hub); loop devices are not disks."""
    disks = {d.name: d for d in read_disks(_sys_tree(tmp_path))}
    assert sorted(disks) == ["nvme0n1", "sda", "sdb"]
    sda = disks["sda"]
    assert (sda.model, sda.vendor, sda.serial) == ("Samsung SSD 870", "ATA", "S5Y1NJ0R123456A")
    assert sda.size_bytes == 1953525168 * 512
    assert not sda.removable and not sda.rotational
    assert sda.partitions == [
        Partition(name="sda1", size_bytes=1048576 * 512),
        Partition(name="sda2", size_bytes=1952474767 * 512),
    ]
    nvme = disks["nvme0n1"]
    assert (nvme.model, nvme.serial) == ("WDC PC SN730 SDBQNTY-512G-1001", "21043Q801234")
    assert nvme.partitions == []
    sdb = disks["sdb"]
    assert (sdb.vendor, sdb.model, sdb.serial) == (
        "SanDisk",
        "Cruzer Blade",
        "4C530001230101117054",
    )
    assert sdb.removable and sdb.rotational


def test_cpu_and_memory_of_a_recorded_arm_board(tmp_path: Path) -> None:
    """Recorded /proc of a Raspberry Pi 4 (no "model name", no topology files)."""
    proc = tmp_path / "proc"
    _write(
        proc / "cpuinfo",
        "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU part\t: 0xd08\n\n"
        "processor\t: 1\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\n\n"
        "Hardware\t: BCM2835\nRevision\t: c03112\nModel\t\t: Raspberry Pi 4 Model B Rev 1.2\n",
    )
    _write(proc / "meminfo", "MemTotal:        3884328 kB\nMemFree: 1 kB\nSwapTotal: 102396 kB")
    sysfs = tmp_path / "sys"
    for n in (0, 1):
        (sysfs / f"devices/system/cpu/cpu{n}").mkdir(parents=True)
    _write(sysfs / "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "1500000")
    cpu = read_cpu(proc, sysfs)
    assert (cpu.model, cpu.vendor) == ("Raspberry Pi 4 Model B Rev 1.2", "0x41")
    assert (cpu.sockets, cpu.cores, cpu.threads, cpu.max_mhz) == (1, 2, 2, 1500)
    assert read_memory(proc) == (3884328 * 1024, 102396 * 1024)
    assert not is_virtual_machine(proc)


def test_os_release_quoting(tmp_path: Path) -> None:
    """os-release(5) quoting, and the fallback to /usr/lib/os-release."""
    usr_lib = tmp_path / "usr-lib-os-release"
    _write(
        usr_lib,
        '# comment\nNAME="Ubuntu"\nVERSION="22.04.3 LTS (Jammy Jellyfish)"\nID=ubuntu\n'
        'VERSION_ID=\'22.04\'\nVERSION_CODENAME=jammy\nPRETTY_NAME="Say \\"hi\\""',
    )
    system = read_os_release((tmp_path / "etc-os-release", usr_lib))
    assert (system.id, system.name, system.version_id, system.codename) == (
        "ubuntu",
        "Ubuntu",
        "22.04",
        "jammy",
    )
    assert system.pretty_name == 'Say "hi"'
    empty = read_os_release((tmp_path / "none",))
    assert (empty.id, empty.name) == ("linux", "Linux")
