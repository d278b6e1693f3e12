"""The mount table and the removable-media decision.

No USB stick or card can be plugged into this machine, so the decision for block
devices is tested on a recorded /proc/self/mountinfo and a /sys tree built in the
test with the real sysfs layout (/sys/dev/block/MAJ:MIN links into /sys/devices,
``removable`` and ``partition`` attributes). The parser and the /media rule are also
checked against the real mount table, with a real tmpfs mounted as root.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sekimori.agent.platform.linux.mounts import (
    Mount,
    RemovableMedia,
    filesystem_label,
    is_removable,
    parse_mountinfo,
    read_mounts,
    removable_mounts,
)

# Recorded from a Debian laptop with a USB stick (sdb) and a USB SSD (sdc) plugged in,
# trimmed; plus an internal SATA disk (sda) and an SD card in a PCI reader (mmcblk0).
MOUNTINFO = "".join(
    line + "\n"
    for line in [
        "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro",
        "25 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
        "26 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev "
        "rw,size=8000000k,nr_inodes=2000000,mode=755",
        "45 22 259:1 / /boot/efi rw,relatime shared:29 - vfat /dev/nvme0n1p1 "
        "rw,fmask=0077,dmask=0077,codepage=437",
        "60 22 0:60 / /run/user/1000 rw,nosuid,nodev,relatime shared:400 - tmpfs tmpfs "
        "rw,size=1600000k,mode=700",
        "612 60 8:17 / /media/alice/KINGSTON rw,nosuid,nodev,relatime shared:330 - vfat "
        "/dev/sdb1 rw,uid=1000,gid=1000,fmask=0022,dmask=0022,codepage=437,utf8,flush,"
        "errors=remount-ro",
        r"640 22 8:33 / /mnt/backup\040disk ro,relatime shared:340 - ext4 /dev/sdc1 ro",
        "650 22 8:1 / /srv/data rw,relatime shared:350 - ext4 /dev/sda1 rw",
        "660 22 179:1 / /mnt/sd rw,relatime shared:360 - ext4 /dev/mmcblk0p1 rw",
        "this line is not mountinfo",
    ]
)


def build_sysfs(root: Path) -> Path:
    """A /sys tree with the real layout for the disks of MOUNTINFO."""
    pci = root / "devices" / "pci0000:00"
    disks = {
        # name: (device path under pci, removable, partitions as (name, major:minor))
        "sdb": (
            "0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb",
            "1",
            [("sdb1", "8:17")],
        ),
        "sdc": (
            "0000:00:14.0/usb2/2-2/2-2:1.0/host7/target7:0:0/7:0:0:0/block/sdc",
            "0",
            [("sdc1", "8:33")],
        ),
        "sda": ("0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda", "0", [("sda1", "8:1")]),
        "nvme0n1": (
            "0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1",
            "0",
            [("nvme0n1p1", "259:1"), ("nvme0n1p2", "259:2")],
        ),
        "mmcblk0": (
            "0000:00:1e.6/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0",
            "0",
            [("mmcblk0p1", "179:1")],
        ),
    }
    (root / "dev" / "block").mkdir(parents=True)
    for disk, (rel, removable, parts) in disks.items():
        disk_dir = pci / rel
        disk_dir.mkdir(parents=True)
        (disk_dir / "removable").write_text(removable + "\n")
        (disk_dir / "dev").write_text("x\n")
        for name, major_minor in parts:
            (disk_dir / name).mkdir()
            (disk_dir / name / "partition").write_text("1\n")
            link = root / "dev" / "block" / major_minor
            link.symlink_to(os.path.relpath(disk_dir / name, link.parent))
        assert disk  # names document the tree
    return root


def by_point(mounts: list[Mount]) -> dict[str, Mount]:
    return {m.mount_point: m for m in mounts}


def test_parse_recorded_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 9  # the malformed line is skipped
    stick = by_point(mounts)["/media/alice/KINGSTON"]
    assert stick == Mount(
        mount_id=612,
        major_minor="8:17",
        root="/",
        mount_point="/media/alice/KINGSTON",
        options="rw,nosuid,nodev,relatime",
        fstype="vfat",
        source="/dev/sdb1",
        super_options=(
            "rw,uid=1000,gid=1000,fmask=0022,dmask=0022,codepage=437,utf8,flush,errors=remount-ro"
        ),
    )
    assert not stick.read_only
    backup = by_point(mounts)["/mnt/backup disk"]  # \040 is a space
    assert backup.read_only and backup.source == "/dev/sdc1"


def test_removable_decision_on_recorded_sysfs(tmp_path: Path) -> None:
    sys_root = build_sysfs(tmp_path / "sys")
    mounts = by_point(parse_mountinfo(MOUNTINFO))

    def removable(point: str) -> bool:
        return is_removable(mounts[point], sys_root=sys_root)

    assert removable("/media/alice/KINGSTON")  # removable=1 and under /media
    assert removable("/mnt/backup disk")  # removable=0 but on a USB bus
    assert not removable("/")  # NVMe system disk
    assert not removable("/boot/efi")
    assert not removable("/srv/data")  # SATA disk
    assert not removable("/mnt/sd")  # card in a PCI reader that reports removable=0
    assert not removable("/proc")  # no block device
    assert not removable("/run/user/1000")

    found = removable_mounts(list(mounts.values()), sys_root=sys_root)
    assert [m.mount_point for m in found] == ["/media/alice/KINGSTON", "/mnt/backup disk"]


def test_removable_attribute_alone_is_enough(tmp_path: Path) -> None:
    sys_root = build_sysfs(tmp_path / "sys")
    card = by_point(parse_mountinfo(MOUNTINFO))["/mnt/sd"]
    disk = next((sys_root / "devices").rglob("mmcblk0"))
    (disk / "removable").write_text("1\n")
    assert is_removable(card, sys_root=sys_root)


def test_media_roots_count_whatever_the_device(tmp_path: Path) -> None:
    line = "700 22 0:99 / /run/media/bob/PHONE rw - fuse.jmtpfs jmtpfs rw,user_id=1000\n"
    (phone,) = parse_mountinfo(line)
    assert is_removable(phone, sys_root=tmp_path)
    assert not is_removable(phone, sys_root=tmp_path, media_roots=("/media",))


def test_a_later_mount_on_the_same_point_hides_the_earlier(tmp_path: Path) -> None:
    sys_root = build_sysfs(tmp_path / "sys")
    text = MOUNTINFO + "700 612 0:70 / /media/alice/KINGSTON rw - tmpfs tmpfs rw\n"
    text += "701 22 8:1 / /media/alice/KINGSTON rw - ext4 /dev/sda1 rw\n"
    (only,) = [
        m
        for m in removable_mounts(parse_mountinfo(text), sys_root=sys_root)
        if m.mount_point == "/media/alice/KINGSTON"
    ]
    assert only.mount_id == 701  # under /media, so still removable, but the newest mount


def test_filesystem_label_from_udev_links(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "sdb1").write_bytes(b"")
    (dev / "sdc1").write_bytes(b"")
    labels = tmp_path / "by-label"
    labels.mkdir()
    (labels / r"MY\x20STICK").symlink_to(dev / "sdb1")
    assert filesystem_label(str(dev / "sdb1"), labels) == "MY STICK"
    assert filesystem_label(str(dev / "sdc1"), labels) == ""
    assert filesystem_label("tmpfs", tmp_path / "missing") == ""


def test_removable_media_is_worked_out_again_only_when_the_table_changes(
    tmp_path: Path,
) -> None:
    sys_root = build_sysfs(tmp_path / "sys")
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    media = RemovableMedia(table, sys_root=sys_root)
    assert [m.mount_point for m in media.current()] == ["/media/alice/KINGSTON", "/mnt/backup disk"]
    # sysfs changes alone are not looked at again while the table is the same ...
    card = next((sys_root / "devices").rglob("mmcblk0"))
    (card / "removable").write_text("1\n")
    assert len(media.current()) == 2
    # ... a changed table is.
    table.write_text(MOUNTINFO + "\n")
    assert "/mnt/sd" in [m.mount_point for m in media.current()]
    table.unlink()
    with pytest.raises(OSError):
        media.current()


def test_the_real_mount_table_parses() -> None:
    mounts = read_mounts()
    assert any(m.mount_point == "/" for m in mounts)
    assert any(m.fstype == "proc" and m.mount_point == "/proc" for m in mounts)


@pytest.fixture
def media_tmpfs() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = Path("/media") / f"sekimori-test-{uuid.uuid4().hex[:8]}"
    point.mkdir(parents=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(point)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        try:
            yield point
        finally:
            subprocess.run(["umount", str(point)], check=True)
    finally:
        point.rmdir()


def test_a_real_mount_under_media_is_removable(media_tmpfs: Path, tmp_path: Path) -> None:
    found = {m.mount_point: m for m in removable_mounts(read_mounts())}
    mount = found[str(media_tmpfs)]
    assert mount.fstype == "tmpfs" and mount.source == "tmpfs" and mount.read_only


def test_a_real_mount_elsewhere_is_not_removable(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "mnt"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], check=True)
    try:
        mounts = read_mounts()
        assert any(m.mount_point == str(point) for m in mounts)
        assert str(point) not in {m.mount_point for m in removable_mounts(mounts)}
    finally:
        subprocess.run(["umount", str(point)], check=True)
