"""The device collector.

USB: no USB device or controller exists on this machine, so attach and detach are
shown on a recorded /sys/bus/usb/devices fixture (real layout and attribute names,
see tests/agent/platform/test_usb.py) to which the test adds and removes device
directories between the collector's ticks (``usb_root`` points at it).
Media: a real tmpfs is mounted under /media and unmounted (as root), read from the
real mount table; a USB stick's mount is shown on a recorded mountinfo + sysfs
fixture (``mountinfo``, ``sys_root``).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sekimori.agent.collectors.base import CollectorError, Sink
from sekimori.agent.collectors.devices import DeviceCollector, DeviceSettings
from sekimori.agent.outbox import Outbox
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import Payload
from sekimori.protocol.events.device import (
    MediaMounted,
    MediaUnmounted,
    UsbAttached,
    UsbDetached,
)
from tests.agent.collectors.harness import RunningCollector
from tests.agent.platform.test_mounts import MOUNTINFO, build_sysfs
from tests.agent.platform.test_usb import (
    PIXEL,
    RECEIVER,
    STICK,
    add_device,
    remove_device,
    usb_root,
)

Seen = tuple[str, Payload]


def events(outbox: Outbox) -> list[Seen]:
    return [
        (e.kind, decode_payload(e.kind, e.payload))
        for e in outbox.peek(0, max_events=100_000, max_bytes=1 << 30)
    ]


def wait_for(outbox: Outbox, found: Callable[[list[Seen]], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not found(seen := events(outbox)):
        if time.monotonic() > deadline:
            pytest.fail(f"expected event did not appear; got {seen}")
        time.sleep(0.02)


def count(outbox: Outbox, kind: str) -> int:
    return sum(1 for k, _ in events(outbox) if k == kind)


class Running(RunningCollector):
    """The collector's run() in a thread (see harness.RunningCollector)."""

    def __init__(self, outbox: Outbox, **settings: Any) -> None:
        settings.setdefault("interval_seconds", 0.05)
        conf = msgspec.convert(settings, DeviceSettings)
        collector = DeviceCollector(conf, Sink(outbox, "devices"))
        super().__init__(collector)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    yield box
    box.close()


@pytest.fixture
def sys_root(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    usb_root(root)
    return root


@pytest.fixture
def no_media(tmp_path: Path) -> Path:
    """A mount table with no removable medium, so the USB tests see no real mounts."""
    path = tmp_path / "mountinfo"
    path.write_text("22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n")
    return path


def settle(outbox: Outbox) -> None:
    """Wait until the collector has saved its first state (the cursor)."""
    deadline = time.monotonic() + 10
    while outbox.cursor("collector.devices") is None:
        if time.monotonic() > deadline:
            pytest.fail("the collector never saved its state")
        time.sleep(0.02)


def test_usb_stick_attached_and_detached(outbox: Outbox, sys_root: Path, no_media: Path) -> None:
    running = Running(outbox, usb_root=str(sys_root / "bus/usb/devices"), mountinfo=str(no_media))
    try:
        settle(outbox)
        assert events(outbox) == []  # only the root hub: nothing to report
        add_device(sys_root, "1-2", STICK, ["08"], devnum=9)
        wait_for(outbox, lambda s: count(outbox, "device.usb_attached") == 1)
        remove_device(sys_root, "1-2")
        wait_for(outbox, lambda s: count(outbox, "device.usb_detached") == 1)
    finally:
        running.stop()
    fields: dict[str, Any] = {
        "port": "1-2",
        "bus": 1,
        "address": 9,
        "vendor_id": "0781",
        "product_id": "5567",
        "manufacturer": "SanDisk",
        "product": "Cruzer Blade",
        "serial": "4C530001230521116023",
        "device_class": "00",
        "interface_classes": ["08"],
        "category": "mass_storage",
    }
    assert events(outbox) == [
        ("device.usb_attached", UsbAttached(**fields, present_at_start=False)),
        ("device.usb_detached", UsbDetached(**fields)),
    ]


def test_replugged_in_the_same_port_is_detach_then_attach(
    outbox: Outbox, sys_root: Path, no_media: Path
) -> None:
    add_device(sys_root, "1-3", PIXEL, ["06"], devnum=4)
    running = Running(outbox, usb_root=str(sys_root / "bus/usb/devices"), mountinfo=str(no_media))
    try:
        wait_for(outbox, lambda s: count(outbox, "device.usb_attached") == 1)
        # Out and in again between two ticks: only the new bus address tells.
        remove_device(sys_root, "1-3")
        add_device(sys_root, "1-3", PIXEL, ["06"], devnum=5)
        wait_for(outbox, lambda s: count(outbox, "device.usb_attached") == 2)
    finally:
        running.stop()
    seen = events(outbox)
    assert [k for k, _ in seen] == [
        "device.usb_attached",
        "device.usb_detached",
        "device.usb_attached",
    ]
    first, detached, second = (p for _, p in seen)
    assert isinstance(first, UsbAttached) and first.present_at_start and first.address == 4
    assert isinstance(detached, UsbDetached) and detached.address == 4
    assert isinstance(second, UsbAttached) and not second.present_at_start
    assert second.address == 5 and second.category == "phone_camera"


def test_restart_reports_only_what_changed_meanwhile(
    outbox: Outbox, sys_root: Path, no_media: Path
) -> None:
    add_device(sys_root, "1-2", STICK, ["08"])
    add_device(sys_root, "1-3", PIXEL, ["06"])
    settings = {"usb_root": str(sys_root / "bus/usb/devices"), "mountinfo": str(no_media)}
    running = Running(outbox, **settings)
    wait_for(outbox, lambda s: count(outbox, "device.usb_attached") == 2)
    running.stop()
    assert all(isinstance(p, UsbAttached) and p.present_at_start for _, p in events(outbox))

    # Agent restarted: the devices still there are not reported again (the first
    # tick compares with the saved state), only the receiver plugged in now.
    running = Running(outbox, **settings)
    add_device(sys_root, "1-4", RECEIVER, ["03", "03"])
    wait_for(outbox, lambda s: count(outbox, "device.usb_attached") == 3)
    running.stop()
    assert len(events(outbox)) == 3
    assert getattr(events(outbox)[-1][1], "port", "") == "1-4"

    # The phone was unplugged while the agent was stopped.
    remove_device(sys_root, "1-3")
    running = Running(outbox, **settings)
    wait_for(outbox, lambda s: count(outbox, "device.usb_detached") == 1)
    running.stop()
    assert len(events(outbox)) == 4
    (detached,) = [p for k, p in events(outbox) if k == "device.usb_detached"]
    assert getattr(detached, "port", "") == "1-3"


def test_no_usb_bus_is_not_a_failure(outbox: Outbox, tmp_path: Path, no_media: Path) -> None:
    running = Running(outbox, usb_root=str(tmp_path / "missing"), mountinfo=str(no_media))
    settle(outbox)
    running.stop()
    assert events(outbox) == []


def test_stick_mount_from_a_recorded_mount_table(outbox: Outbox, tmp_path: Path) -> None:
    sys_root = build_sysfs(tmp_path / "sys")
    table = tmp_path / "mountinfo"
    lines = MOUNTINFO.splitlines(keepends=True)
    table.write_text("".join(line for line in lines if "KINGSTON" not in line))
    running = Running(
        outbox, usb_root=str(tmp_path / "none"), mountinfo=str(table), sys_root=str(sys_root)
    )
    try:
        # The USB SSD (/mnt/backup disk) is present from the start.
        wait_for(outbox, lambda s: count(outbox, "device.media_mounted") == 1)
        table.write_text(MOUNTINFO)
        wait_for(outbox, lambda s: count(outbox, "device.media_mounted") == 2)
        table.write_text("".join(line for line in lines if "KINGSTON" not in line))
        wait_for(outbox, lambda s: count(outbox, "device.media_unmounted") == 1)
    finally:
        running.stop()
    assert events(outbox) == [
        (
            "device.media_mounted",
            MediaMounted(
                mount_point="/mnt/backup disk",
                device="/dev/sdc1",
                fstype="ext4",
                read_only=True,
                present_at_start=True,
            ),
        ),
        (
            "device.media_mounted",
            MediaMounted(mount_point="/media/alice/KINGSTON", device="/dev/sdb1", fstype="vfat"),
        ),
        (
            "device.media_unmounted",
            MediaUnmounted(mount_point="/media/alice/KINGSTON", device="/dev/sdb1", fstype="vfat"),
        ),
    ]


def test_real_tmpfs_mounted_and_unmounted_under_media(outbox: Outbox, tmp_path: Path) -> None:
    """A real mount under /media, read from the real mount table (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = Path("/media") / f"sekimori-test-{uuid.uuid4().hex[:8]}"
    point.mkdir(parents=True)
    mounted = False
    running = Running(outbox, usb_root=str(tmp_path / "none"))
    try:
        settle(outbox)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted = True

        def ours(kind: str) -> Callable[[list[Seen]], bool]:
            return lambda s: any(
                k == kind and getattr(p, "mount_point", "") == str(point) for k, p in s
            )

        wait_for(outbox, ours("device.media_mounted"))
        subprocess.run(["umount", str(point)], check=True)
        mounted = False
        wait_for(outbox, ours("device.media_unmounted"))
    finally:
        running.stop()
        if mounted:
            subprocess.run(["umount", str(point)], check=True)
        point.rmdir()
    mine = [(k, p) for k, p in events(outbox) if getattr(p, "mount_point", "") == str(point)]
    assert mine == [
        (
            "device.media_mounted",
            MediaMounted(mount_point=str(point), device="tmpfs", fstype="tmpfs"),
        ),
        (
            "device.media_unmounted",
            MediaUnmounted(mount_point=str(point), device="tmpfs", fstype="tmpfs"),
        ),
    ]


def test_unreadable_mount_table_fails_with_the_reason(outbox: Outbox, tmp_path: Path) -> None:
    conf = DeviceSettings(usb_root=str(tmp_path), mountinfo=str(tmp_path / "missing"))
    with pytest.raises(CollectorError, match="cannot read the mount table"):
        DeviceCollector(conf, Sink(outbox, "devices")).run(threading.Event())
