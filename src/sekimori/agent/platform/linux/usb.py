"""USB devices as the kernel lists them in /sys/bus/usb/devices.

Each device is a directory named by its bus and port path ("1-1", "2-1.4"), with
the attributes idVendor, idProduct, manufacturer, product, serial, bDeviceClass,
busnum and devnum, and one sub-directory per interface ("2-1.4:1.0") with
bInterfaceClass and, when the device names it, an ``interface`` string. Root hubs
("usb1") are the host controllers themselves and are left out. Interface entries
("1-1:1.0") at the top level are links to those sub-directories and are skipped.

The class decides what the device is: USB class codes 0x08 mass storage, 0x06 still
image (cameras, and phones in MTP/PTP mode), 0x03 HID (keyboards, mice, also many
"rubber ducky" attack tools), 0x07 printer, 0x09 hub. Many Android phones present
MTP on a vendor-specific interface (0xff) named "MTP", which is recognised too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Category", "UsbDevice", "category", "read_device", "read_devnum", "scan"]

Category = Literal["mass_storage", "phone_camera", "hid", "printer", "hub", "other"]

_MASS_STORAGE = "08"
_STILL_IMAGE = "06"
_HID = "03"
_PRINTER = "07"
_HUB = "09"


@dataclass(frozen=True, slots=True)
class UsbDevice:
    port: str
    bus: int
    address: int
    vendor_id: str
    product_id: str
    manufacturer: str
    product: str
    serial: str
    device_class: str
    interface_classes: tuple[str, ...]
    category: Category


def _attr(directory: Path, name: str) -> str:
    try:
        return (directory / name).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _number(text: str) -> int:
    return int(text) if text.isdigit() else 0


def category(
    device_class: str, interface_classes: tuple[str, ...], interface_names: tuple[str, ...] = ()
) -> Category:
    """What a device is, from its device class and its interfaces' classes and names.

    Storage wins over everything else: a phone that also offers mass storage can
    carry files off as a stick does.
    """
    classes = {c.lower() for c in (device_class, *interface_classes)}
    if _MASS_STORAGE in classes:
        return "mass_storage"
    if _STILL_IMAGE in classes or any("mtp" in n.lower() for n in interface_names):
        return "phone_camera"
    if _HID in classes:
        return "hid"
    if _PRINTER in classes:
        return "printer"
    if device_class.lower() == _HUB:
        return "hub"
    return "other"


def read_devnum(directory: str | Path) -> int:
    """The device's address on its bus (changes on every attach); 0 if it is gone."""
    return _number(_attr(Path(directory), "devnum"))


def read_device(directory: str | Path) -> UsbDevice | None:
    """The device in ``directory`` (one entry of /sys/bus/usb/devices), or None when
    it is not a device (it vanished, or it is an interface)."""
    path = Path(directory)
    vendor = _attr(path, "idVendor")
    if not vendor:
        return None
    classes: list[str] = []
    names: list[str] = []
    prefix = path.name + ":"
    try:
        entries = sorted(e.name for e in os.scandir(path) if e.name.startswith(prefix))
    except OSError:
        entries = []
    for entry in entries:
        interface = path / entry
        cls = _attr(interface, "bInterfaceClass")
        if cls:
            classes.append(cls.lower())
        name = _attr(interface, "interface")
        if name:
            names.append(name)
    device_class = _attr(path, "bDeviceClass").lower()
    return UsbDevice(
        port=path.name,
        bus=_number(_attr(path, "busnum")),
        address=_number(_attr(path, "devnum")),
        vendor_id=vendor.lower(),
        product_id=_attr(path, "idProduct").lower(),
        manufacturer=_attr(path, "manufacturer"),
        product=_attr(path, "product"),
        serial=_attr(path, "serial"),
        device_class=device_class,
        interface_classes=tuple(dict.fromkeys(classes)),
        category=category(device_class, tuple(classes), tuple(names)),
    )


def scan(root: str | Path = "/sys/bus/usb/devices") -> list[str]:
    """The names of the devices under ``root`` (no root hubs, no interfaces).

    Raises OSError when ``root`` cannot be listed (no USB support at all).
    """
    return sorted(
        name for name in os.listdir(root) if ":" not in name and not name.startswith("usb")
    )
