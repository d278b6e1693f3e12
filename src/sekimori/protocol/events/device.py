"""Events of the device collector: USB devices and removable media.

USB ids and classes are lower-case hex as the kernel shows them ("0781", "08").
``category`` sums the classes up: mass_storage (sticks, disks, card readers),
phone_camera (still-image/MTP/PTP: cameras and phones), hid (keyboards, mice and
devices posing as them), printer, hub, other.
"""

from __future__ import annotations

from typing import Final, Literal

from sekimori.protocol.events._base import Payload

__all__ = ["KINDS", "MediaMounted", "MediaUnmounted", "UsbAttached", "UsbDetached", "UsbDevice"]


class UsbDevice(Payload):
    """A USB device. ``port`` is its place on the bus ("2-1.4"); ``address`` its
    number on the bus for this attachment."""

    port: str
    bus: int
    address: int
    vendor_id: str
    product_id: str
    interface_classes: list[str]
    manufacturer: str = ""
    product: str = ""
    serial: str = ""
    device_class: str = ""
    category: Literal["mass_storage", "phone_camera", "hid", "printer", "hub", "other"] = "other"


class UsbAttached(UsbDevice):
    """A device appeared. ``present_at_start``: it was already there when the agent
    first looked on this PC (not an attachment the agent saw happen)."""

    present_at_start: bool = False


class UsbDetached(UsbDevice):
    """A device went away; the fields are those seen when it was attached."""


class MediaMounted(Payload):
    mount_point: str
    device: str
    fstype: str
    label: str = ""
    read_only: bool = False
    present_at_start: bool = False


class MediaUnmounted(Payload):
    mount_point: str
    device: str
    fstype: str
    label: str = ""


KINDS: Final[dict[str, type[Payload]]] = {
    "device.usb_attached": UsbAttached,
    "device.usb_detached": UsbDetached,
    "device.media_mounted": MediaMounted,
    "device.media_unmounted": MediaUnmounted,
}
