"""The two columns the console searches and groups by, taken from a validated payload.

``tag`` is a short grouping key (a report's rows): the web host, the focused
application, the executable's name, the USB device, the printer. ``subject`` is the
text a "contains" search looks in: URL and page title, window title, file path,
command line. Computed once at ingest so the console never parses JSON to search.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sekimori.protocol.events import Payload
from sekimori.protocol.events.agent import (
    ActionOutcome,
    AgentLog,
    AgentStarted,
    CollectorHealth,
    NoticeUpdated,
    PolicyApplication,
)
from sekimori.protocol.events.device import (
    MediaMounted,
    MediaUnmounted,
    UsbAttached,
    UsbDetached,
    UsbDevice,
)
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
from sekimori.protocol.events.process import ProcessRunning, ProcessStarted, ProcessStopped
from sekimori.protocol.events.screen import ScreenFrame
from sekimori.protocol.events.session import Logoff, Logon
from sekimori.protocol.events.web import WebVisit
from sekimori.protocol.events.window import WindowActive, WindowFocus

__all__ = ["MAX_SUBJECT", "MAX_TAG", "event_fields"]

MAX_TAG = 255
MAX_SUBJECT = 4096


_Fields = tuple[str | None, str | None]


def _web(p: WebVisit) -> _Fields:
    return p.host, f"{p.url} {p.title}"


def _focus(p: WindowFocus | WindowActive) -> _Fields:
    if p.window is None:
        return None, None
    return p.window.application, p.window.title


def _started(p: ProcessStarted) -> _Fields:
    return p.name, " ".join([p.exe, *p.argv])


def _stopped(p: ProcessStopped) -> _Fields:
    return p.name, p.exe


def _moved(p: FileMoved) -> _Fields:
    return os.path.splitext(p.dest)[1].lower() or None, f"{p.src} {p.dest}"


def _copied(p: FileCopiedToRemovable) -> _Fields:
    return p.device or p.mount_point, p.path


def _file(p: FileCreated | FileModified | FileDeleted) -> _Fields:
    return os.path.splitext(p.path)[1].lower() or None, p.path


def _usb(p: UsbDevice) -> _Fields:
    product = p.product or p.product_id
    return f"{p.vendor_id}:{p.product_id}", f"{p.manufacturer} {product} {p.serial}".strip()


def _media(p: MediaMounted | MediaUnmounted) -> _Fields:
    return p.device, f"{p.mount_point} {p.label}".strip()


def _print(p: PrintJob | PrintPage) -> _Fields:
    return p.printer, p.document


def _session(p: Logon | Logoff) -> _Fields:
    return p.user, f"{p.tty} {p.host} {p.address}".strip()


# The manager is searchable too: "pypi" or "npm" finds the language packages' changes.
def _package(p: SoftwareInstalled | SoftwareRemoved) -> _Fields:
    return p.name, f"{p.name} {p.version} {p.manager}"


def _version(p: SoftwareUpgraded | SoftwareDowngraded) -> _Fields:
    return p.name, f"{p.name} {p.from_version} {p.to_version} {p.manager}"


def _log(p: AgentLog) -> _Fields:
    return p.source, p.message


def _health(p: CollectorHealth) -> _Fields:
    return p.collector, f"{p.status} {p.reason}".strip()


def _agent(p: AgentStarted) -> _Fields:
    return p.version, None


def _policy(p: PolicyApplication) -> _Fields:
    state = "applied" if p.ok else f"refused: {p.error}"
    return p.group or None, f"version {p.version} {state} {' '.join(p.restarted)}".strip()


def _action(p: ActionOutcome) -> _Fields:
    return p.action, f"{p.status} {p.reason} {p.nonce}".strip()


def _frame(p: ScreenFrame) -> _Fields:
    return p.application, p.title


def _notice(p: NoticeUpdated) -> _Fields:
    return ("on" if p.enabled else "off"), f"{p.text_en} {p.text_ja}".strip() or None


# By exact payload class: one dict lookup per event on the ingest hot path (a chain
# of isinstance tests cost more than the rest of the row's handling). Subclasses
# are listed explicitly; a class missing here has no tag or subject.
_BY_TYPE: dict[type[Any], Callable[[Any], _Fields]] = {
    WebVisit: _web,
    WindowFocus: _focus,
    WindowActive: _focus,
    ProcessStarted: _started,
    ProcessRunning: _started,
    ProcessStopped: _stopped,
    FileMoved: _moved,
    FileCopiedToRemovable: _copied,
    FileCreated: _file,
    FileModified: _file,
    FileDeleted: _file,
    UsbAttached: _usb,
    UsbDetached: _usb,
    MediaMounted: _media,
    MediaUnmounted: _media,
    PrintJob: _print,
    PrintPage: _print,
    Logon: _session,
    Logoff: _session,
    SoftwareInstalled: _package,
    SoftwareRemoved: _package,
    SoftwareUpgraded: _version,
    SoftwareDowngraded: _version,
    AgentLog: _log,
    CollectorHealth: _health,
    AgentStarted: _agent,
    PolicyApplication: _policy,
    NoticeUpdated: _notice,
    ActionOutcome: _action,
    ScreenFrame: _frame,
}


def _fields(payload: Payload) -> _Fields:
    extract = _BY_TYPE.get(type(payload))
    return extract(payload) if extract is not None else (None, None)


def event_fields(payload: Payload) -> tuple[str | None, str | None]:
    """(tag, subject) of an event, each cut to its column's size."""
    tag, subject = _fields(payload)
    return (tag[:MAX_TAG] if tag else None, subject[:MAX_SUBJECT] if subject else None)
