"""The device collector: USB devices attached/detached, removable media mounted/unmounted.

Every ``interval_seconds`` it lists /sys/bus/usb/devices (reading a device's
attributes only when it is new or its bus address changed, i.e. it was plugged in
again) and the removable mounts of the mount table, and reports the differences
with the last state it saw. That state is the cursor, saved with the events: after
a restart (or a reboot) only what changed meanwhile is reported, and on the first
run on a PC what is present is reported once with ``present_at_start``.

Polling a few sysfs files every two seconds costs far less than keeping a udev
netlink socket's thread; the price is that a device plugged in and out within one
interval is not seen.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import ClassVar

import msgspec

from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings
from sekimori.agent.outbox import PendingEvent
from sekimori.agent.platform.linux import mounts, usb
from sekimori.protocol.events import Payload
from sekimori.protocol.events.device import (
    MediaMounted,
    MediaUnmounted,
    UsbAttached,
    UsbDetached,
    UsbDevice,
)

__all__ = ["DeviceCollector", "DeviceSettings"]

log = logging.getLogger(__name__)


class DeviceSettings(CollectorSettings):
    interval_seconds: float = 2.0
    usb_root: str = "/sys/bus/usb/devices"
    mountinfo: str = "/proc/self/mountinfo"
    # Where the removable decision reads the block devices (see platform mounts).
    sys_root: str = "/sys"
    media_roots: list[str] = msgspec.field(default_factory=lambda: list(mounts.MEDIA_ROOTS))


class _Medium(msgspec.Struct, frozen=True):
    mount_id: int
    mount_point: str
    device: str
    fstype: str
    label: str
    read_only: bool


class _State(msgspec.Struct):
    """What was last reported: the cursor."""

    usb: dict[str, UsbDevice] = msgspec.field(default_factory=dict)
    media: dict[str, _Medium] = msgspec.field(default_factory=dict)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_State)


def _payload(device: usb.UsbDevice) -> UsbDevice:
    return UsbDevice(
        port=device.port,
        bus=device.bus,
        address=device.address,
        vendor_id=device.vendor_id,
        product_id=device.product_id,
        manufacturer=device.manufacturer,
        product=device.product,
        serial=device.serial,
        device_class=device.device_class,
        interface_classes=list(device.interface_classes),
        category=device.category,
    )


def _as(kind: type[UsbDetached] | type[UsbAttached], device: UsbDevice, **extra: object) -> Payload:
    return msgspec.convert({**msgspec.structs.asdict(device), **extra}, kind)


class DeviceCollector(Collector):
    name: ClassVar[str] = "devices"
    settings_type: ClassVar[type[CollectorSettings]] = DeviceSettings
    settings: DeviceSettings

    def run(self, stop: threading.Event) -> None:
        raw = self.sink.cursor()
        first_run = raw is None
        try:
            state = _decoder.decode(raw) if raw is not None else _State()
        except msgspec.DecodeError:
            log.warning("device collector cursor unreadable; starting afresh")
            state, first_run = _State(), True
        self._usb_missing_logged = False
        conf = self.settings
        self._mount_table = mounts.RemovableMedia(
            conf.mountinfo, sys_root=conf.sys_root, media_roots=tuple(conf.media_roots)
        )
        try:
            while True:
                state = self._tick(state, first_run=first_run)
                first_run = False
                if stop.wait(self.settings.interval_seconds):
                    return
        finally:
            self._mount_table.close()

    def _tick(self, before: _State, *, first_run: bool) -> _State:
        now = _State(usb=self._scan_usb(before.usb), media=self._scan_media(before.media))
        events: list[PendingEvent] = []
        for point, medium in before.media.items():
            if now.media.get(point) != medium:
                gone = MediaUnmounted(
                    mount_point=point,
                    device=medium.device,
                    fstype=medium.fstype,
                    label=medium.label,
                )
                events.append(PendingEvent("device.media_unmounted", gone))
        for port, device in before.usb.items():
            if now.usb.get(port) != device:
                events.append(PendingEvent("device.usb_detached", _as(UsbDetached, device)))
        for port, device in now.usb.items():
            if before.usb.get(port) != device:
                attached = _as(UsbAttached, device, present_at_start=first_run)
                events.append(PendingEvent("device.usb_attached", attached))
        for point, medium in now.media.items():
            if before.media.get(point) != medium:
                mounted = MediaMounted(
                    mount_point=point,
                    device=medium.device,
                    fstype=medium.fstype,
                    label=medium.label,
                    read_only=medium.read_only,
                    present_at_start=first_run,
                )
                events.append(PendingEvent("device.media_mounted", mounted))
        if events or first_run:
            self.sink.emit_many(events, cursor=_encoder.encode(now))
        return now

    def _scan_usb(self, before: dict[str, UsbDevice]) -> dict[str, UsbDevice]:
        root = self.settings.usb_root
        try:
            names = usb.scan(root)
        except OSError as exc:
            # No USB controller (a VM, a container): nothing attached, nothing to do.
            if not self._usb_missing_logged:
                log.info("no USB devices to watch (%s): %s", root, exc.strerror or exc)
                self._usb_missing_logged = True
            return {}
        found: dict[str, UsbDevice] = {}
        for name in names:
            directory = os.path.join(root, name)
            known = before.get(name)
            if known is not None and usb.read_devnum(directory) == known.address:
                found[name] = known
                continue
            device = usb.read_device(directory)
            if device is not None:
                found[name] = _payload(device)
        return found

    def _scan_media(self, before: dict[str, _Medium]) -> dict[str, _Medium]:
        conf = self.settings
        try:
            removable = self._mount_table.current()
        except OSError as exc:
            raise CollectorError(f"cannot read the mount table {conf.mountinfo}: {exc}") from exc
        found: dict[str, _Medium] = {}
        for mount in removable:
            known = before.get(mount.mount_point)
            if known is not None and known.mount_id == mount.mount_id:
                found[mount.mount_point] = known
                continue
            found[mount.mount_point] = _Medium(
                mount_id=mount.mount_id,
                mount_point=mount.mount_point,
                device=mount.source,
                fstype=mount.fstype,
                label=mounts.filesystem_label(mount.source) if mount.source.startswith("/") else "",
                read_only=mount.read_only,
            )
        return found
