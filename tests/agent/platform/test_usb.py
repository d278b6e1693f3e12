"""USB devices read from a /sys/bus/usb/devices tree.

No USB device (nor even a USB controller) exists on this machine, so the tree is a
recorded fixture written by the test with the real sysfs layout: device
directories under /sys/devices/.../usbN, linked from /sys/bus/usb/devices, with the
real attribute file names (idVendor, idProduct, manufacturer, product, serial,
bDeviceClass, busnum, devnum) and interface sub-directories ("1-2:1.0") holding
bInterfaceClass and ``interface``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sekimori.agent.platform.linux.usb import UsbDevice, category, read_device, read_devnum, scan

# Recorded from real devices (lsusb -v / sysfs); strings keep the padding the
# devices really send (SanDisk's leading space).
STICK = {
    "idVendor": "0781",
    "idProduct": "5567",
    "manufacturer": " SanDisk",
    "product": "Cruzer Blade",
    "serial": "4C530001230521116023",
    "bDeviceClass": "00",
}
RECEIVER = {
    "idVendor": "046d",
    "idProduct": "c52b",
    "manufacturer": "Logitech",
    "product": "USB Receiver",
    "bDeviceClass": "00",
}
PIXEL = {
    "idVendor": "18d1",
    "idProduct": "4EE1",
    "manufacturer": "Google",
    "product": "Pixel 7",
    "serial": "28131FDH2001QB",
    "bDeviceClass": "00",
}
HUB = {"idVendor": "05e3", "idProduct": "0610", "product": "USB2.1 Hub", "bDeviceClass": "09"}


def usb_root(sys_root: Path) -> Path:
    """An empty /sys/bus/usb/devices with one root hub, as on a PC with no device."""
    devices = sys_root / "bus" / "usb" / "devices"
    devices.mkdir(parents=True)
    add_device(
        sys_root, "usb1", {"idVendor": "1d6b", "idProduct": "0002", "bDeviceClass": "09"}, ["09"]
    )
    return devices


def add_device(
    sys_root: Path,
    port: str,
    attrs: dict[str, str],
    interfaces: list[str],
    *,
    devnum: int = 5,
    interface_names: dict[int, str] | None = None,
) -> Path:
    """Write a device directory (and its interfaces) and link it from the bus list."""
    controller = sys_root / "devices" / "pci0000:00" / "0000:00:14.0" / "usb1"
    directory = controller if port == "usb1" else controller / port
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in {**attrs, "busnum": "1", "devnum": str(devnum)}.items():
        (directory / name).write_text(value + "\n")
    links = sys_root / "bus" / "usb" / "devices"
    for number, cls in enumerate(interfaces):
        name = f"{'1-0' if port == 'usb1' else port}:1.{number}"
        interface = directory / name
        interface.mkdir()
        (interface / "bInterfaceClass").write_text(cls + "\n")
        if interface_names and number in interface_names:
            (interface / "interface").write_text(interface_names[number] + "\n")
        (links / name).symlink_to(os.path.relpath(interface, links))
    (links / port).symlink_to(os.path.relpath(directory, links))
    return links / port


def remove_device(sys_root: Path, port: str) -> None:
    links = sys_root / "bus" / "usb" / "devices"
    for link in links.iterdir():
        if link.name == port or link.name.startswith(port + ":"):
            link.unlink()
    directory = sys_root / "devices" / "pci0000:00" / "0000:00:14.0" / "usb1" / port
    for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    directory.rmdir()


def test_scan_lists_devices_not_hubs_or_interfaces(tmp_path: Path) -> None:
    root = usb_root(tmp_path)
    add_device(tmp_path, "1-2", STICK, ["08"])
    add_device(tmp_path, "1-1", HUB, ["09"])
    add_device(tmp_path, "1-1.4", RECEIVER, ["03", "03", "03"])
    assert scan(root) == ["1-1", "1-1.4", "1-2"]


def test_read_a_usb_stick(tmp_path: Path) -> None:
    root = usb_root(tmp_path)
    add_device(tmp_path, "1-2", STICK, ["08"], devnum=7)
    assert read_device(root / "1-2") == UsbDevice(
        port="1-2",
        bus=1,
        address=7,
        vendor_id="0781",
        product_id="5567",
        manufacturer="SanDisk",
        product="Cruzer Blade",
        serial="4C530001230521116023",
        device_class="00",
        interface_classes=("08",),
        category="mass_storage",
    )
    assert read_devnum(root / "1-2") == 7
    assert read_device(root / "1-2:1.0") is None  # an interface, not a device
    assert read_device(root / "9-9") is None
    assert read_devnum(root / "9-9") == 0


def test_a_phone_in_mtp_mode_on_a_vendor_interface(tmp_path: Path) -> None:
    root = usb_root(tmp_path)
    add_device(tmp_path, "1-3", PIXEL, ["ff", "ff"], interface_names={0: "MTP"})
    device = read_device(root / "1-3")
    assert device is not None
    assert device.category == "phone_camera"
    assert device.product_id == "4ee1"  # lower-cased like every other id
    assert device.interface_classes == ("ff",)
    assert device.manufacturer == "Google"


def test_missing_strings_are_empty(tmp_path: Path) -> None:
    root = usb_root(tmp_path)
    add_device(tmp_path, "1-1", HUB, ["09"])
    device = read_device(root / "1-1")
    assert device is not None
    assert (device.manufacturer, device.serial, device.category) == ("", "", "hub")


@pytest.mark.parametrize(
    ("device_class", "interfaces", "names", "expected"),
    [
        ("00", ("08",), (), "mass_storage"),
        ("00", ("06",), (), "phone_camera"),  # a camera (PTP)
        ("00", ("ff",), ("MTP",), "phone_camera"),
        ("00", ("06", "08"), (), "mass_storage"),  # storage wins
        ("00", ("03", "03"), (), "hid"),
        ("00", ("07", "ff"), (), "printer"),
        ("09", ("09",), (), "hub"),
        ("e0", ("e0", "e0"), (), "other"),  # Bluetooth adapter
        ("ef", ("0e", "0e"), (), "other"),  # webcam (video)
        ("00", (), (), "other"),
    ],
)
def test_category(
    device_class: str, interfaces: tuple[str, ...], names: tuple[str, ...], expected: str
) -> None:
    assert category(device_class, interfaces, names) == expected


def test_no_usb_bus_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        scan(tmp_path / "missing")
