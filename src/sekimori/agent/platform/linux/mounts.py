"""The mount table (/proc/self/mountinfo) and which mounts are removable media.

A mount is removable media when
* its mount point is under /media or /run/media (where udisks and desktop
  environments mount sticks, cards and phones), or
* its block device is removable: the disk's ``removable`` attribute in sysfs is 1,
  or the disk hangs below a USB controller (USB disks and many sticks report
  ``removable`` 0, so the attribute alone misses them).

The device is found by its major:minor number through /sys/dev/block, which works
whatever name the mount source uses (/dev/sdb1, /dev/disk/by-uuid/..., a mapper
name).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MEDIA_ROOTS",
    "Mount",
    "RemovableMedia",
    "filesystem_label",
    "is_removable",
    "parse_mountinfo",
    "read_mounts",
    "removable_mounts",
]

MEDIA_ROOTS: tuple[str, ...] = ("/media", "/run/media")

# A path component like "usb2" (a USB bus) or "2-1" under it: the disk is on USB.
_USB_BUS = re.compile(r"/usb\d+/")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of mountinfo (see proc(5))."""

    mount_id: int
    major_minor: str
    root: str
    mount_point: str
    options: str
    fstype: str
    source: str
    super_options: str

    @property
    def read_only(self) -> bool:
        return "ro" in self.options.split(",")


def _unescape(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo octal.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse the text of a mountinfo file; malformed lines are skipped."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        tail = right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        try:
            mount_id = int(fields[0])
        except ValueError:
            continue
        mounts.append(
            Mount(
                mount_id=mount_id,
                major_minor=fields[2],
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                options=fields[5],
                fstype=tail[0],
                source=_unescape(tail[1]),
                super_options=tail[2] if len(tail) > 2 else "",
            )
        )
    return mounts


def read_mounts(path: str | Path = "/proc/self/mountinfo") -> list[Mount]:
    """The current mount table. Raises OSError if it cannot be read."""
    return parse_mountinfo(Path(path).read_text(encoding="utf-8", errors="surrogateescape"))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _block_device_is_removable(major_minor: str, sys_root: Path) -> bool:
    link = sys_root / "dev" / "block" / major_minor
    try:
        device = Path(os.path.realpath(link, strict=True))
    except OSError:
        return False  # not a block device (tmpfs, proc, network file systems ...)
    disk = device.parent if (device / "partition").exists() else device
    try:
        if (disk / "removable").read_text().strip() == "1":
            return True
    except OSError:
        pass
    relative = "/" + os.path.relpath(disk, sys_root) + "/"
    return _USB_BUS.search(relative) is not None


def is_removable(
    mount: Mount,
    *,
    sys_root: str | Path = "/sys",
    media_roots: tuple[str, ...] = MEDIA_ROOTS,
) -> bool:
    """Whether ``mount`` is a removable medium (see the module docstring)."""
    if any(_under(mount.mount_point, root) for root in media_roots):
        return True
    return _block_device_is_removable(mount.major_minor, Path(sys_root))


def removable_mounts(
    mounts: list[Mount],
    *,
    sys_root: str | Path = "/sys",
    media_roots: tuple[str, ...] = MEDIA_ROOTS,
) -> list[Mount]:
    """The removable-media mounts among ``mounts``, one per mount point (the last
    mounted wins, as it is the one visible at that path)."""
    found: dict[str, Mount] = {}
    for mount in mounts:
        if mount.mount_point == "/":
            continue
        if is_removable(mount, sys_root=sys_root, media_roots=media_roots):
            found[mount.mount_point] = mount
        else:
            found.pop(mount.mount_point, None)
    return list(found.values())


def filesystem_label(source: str, by_label: str | Path = "/dev/disk/by-label") -> str:
    """The file-system label of the device ``source`` (from udev's by-label links),
    or "" when it has none or udev is absent."""
    try:
        target = os.path.realpath(source)
        entries = list(os.scandir(by_label))
    except OSError:
        return ""
    for entry in entries:
        if os.path.realpath(entry.path) == target:
            # udev escapes unsafe characters in link names as \xNN.
            return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), entry.name)
    return ""


class RemovableMedia:
    """The removable mounts, worked out again only when the mount table changed.

    Deciding removability costs a few sysfs look-ups per mount (dozens of mounts with
    snaps), so it is skipped while the table's text is unchanged. For a mountinfo
    file of procfs, the table is not even read while the kernel says it is unchanged:
    a ``poll`` on an open mountinfo file reports POLLPRI/POLLERR once after each change
    of the mount namespace's table (proc(5)), one system call against a read and a
    string comparison of the whole table. Other files (recorded tables in tests) are
    read each time. Call ``close`` when done.
    """

    def __init__(
        self,
        path: str | Path = "/proc/self/mountinfo",
        *,
        sys_root: str | Path = "/sys",
        media_roots: tuple[str, ...] = MEDIA_ROOTS,
    ) -> None:
        self._path = Path(path)
        self._sys_root = sys_root
        self._media_roots = media_roots
        self._text: str | None = None
        self._found: list[Mount] = []
        self._watch: tuple[int, select.poll] | None = None
        self._started = False
        self._stale = False

    def _start_watch(self) -> None:
        """Open the table for change notifications, if it is procfs' (which it is
        when it lives on the file system of /proc/self)."""
        self._started = True
        try:
            if os.stat(self._path).st_dev != os.stat("/proc/self").st_dev:
                return
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        self._watch = (fd, poller)

    def close(self) -> None:
        if self._watch is not None:
            with contextlib.suppress(OSError):
                os.close(self._watch[0])
            self._watch = None

    def current(self) -> list[Mount]:
        """The removable mounts now. Raises OSError if the table cannot be read."""
        if not self._started:
            self._start_watch()  # before the first read: a change between is reported
        elif self._watch is not None and not self._stale:
            if not self._watch[1].poll(0):
                return self._found
            self._stale = True  # the change is consumed: read until a read succeeds
        text = self._path.read_text(encoding="utf-8", errors="surrogateescape")
        self._stale = False
        if text != self._text:
            self._found = removable_mounts(
                parse_mountinfo(text), sys_root=self._sys_root, media_roots=self._media_roots
            )
            self._text = text
        return self._found
