"""The two columns the console searches and groups by, taken from a validated payload.

``tag`` is a short grouping key (a report's rows): the web host, the focused
application, the executable's name, the USB device, the printer. ``subject`` is the
text a "contains" search looks in: URL and page title, window title, file path,
command line. Computed once at ingest so the console never parses JSON to search.
"""

from __future__ import annotations

import os

from sekimori.protocol.events import Payload
from sekimori.protocol.events.agent import AgentLog, AgentStarted, CollectorHealth
from sekimori.protocol.events.device import MediaMounted, MediaUnmounted, UsbDevice
from sekimori.protocol.events.file import (
    FileCopiedToRemovable,
    FileCreated,
    FileDeleted,
    FileModified,
    FileMoved,
)
from sekimori.protocol.events.inventory import (
    SoftwareDowngraded,
    SoftwareInstalled,
    SoftwareRemoved,
    SoftwareUpgraded,
)
from sekimori.protocol.events.printing import PrintJob, PrintPage
from sekimori.protocol.events.process import ProcessStarted, ProcessStopped
from sekimori.protocol.events.session import Logoff, Logon
from sekimori.protocol.events.web import WebVisit
from sekimori.protocol.events.window import WindowActive, WindowFocus

__all__ = ["MAX_SUBJECT", "MAX_TAG", "event_fields"]

MAX_TAG = 255
MAX_SUBJECT = 4096


def _fields(payload: Payload) -> tuple[str | None, str | None]:
    match payload:
        case WebVisit():
            return payload.host, f"{payload.url} {payload.title}"
        case WindowFocus():
            if payload.window is None:
                return None, None
            return payload.window.application, payload.window.title
        case WindowActive() if payload.window is not None:
            return payload.window.application, payload.window.title
        case ProcessStarted():
            return payload.name, " ".join([payload.exe, *payload.argv])
        case ProcessStopped():
            return payload.name, payload.exe
        case FileMoved():
            return os.path.splitext(payload.dest)[
                1
            ].lower() or None, f"{payload.src} {payload.dest}"
        case FileCopiedToRemovable():
            return payload.device or payload.mount_point, payload.path
        case FileCreated() | FileModified() | FileDeleted():
            return os.path.splitext(payload.path)[1].lower() or None, payload.path
        case UsbDevice():
            product = payload.product or payload.product_id
            return f"{payload.vendor_id}:{payload.product_id}", (
                f"{payload.manufacturer} {product} {payload.serial}".strip()
            )
        case MediaMounted() | MediaUnmounted():
            return payload.device, f"{payload.mount_point} {payload.label}".strip()
        case PrintJob() | PrintPage():
            return payload.printer, payload.document
        case Logon() | Logoff():
            return payload.user, f"{payload.tty} {payload.host} {payload.address}".strip()
        case SoftwareInstalled() | SoftwareRemoved():
            return payload.name, f"{payload.name} {payload.version}"
        case SoftwareUpgraded() | SoftwareDowngraded():
            return payload.name, f"{payload.name} {payload.from_version} {payload.to_version}"
        case AgentLog():
            return payload.source, payload.message
        case CollectorHealth():
            return payload.collector, f"{payload.status} {payload.reason}".strip()
        case AgentStarted():
            return payload.version, None
    return None, None


def event_fields(payload: Payload) -> tuple[str | None, str | None]:
    """(tag, subject) of an event, each cut to its column's size."""
    tag, subject = _fields(payload)
    return (tag[:MAX_TAG] if tag else None, subject[:MAX_SUBJECT] if subject else None)
