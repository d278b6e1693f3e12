"""One readable line per stored event, for timelines: a web visit's title and URL,
a focus span's application, title and length, a process's command line, a file's
path, a USB device, a logon.

Payloads are decoded with their kind's typed struct (what ingest validated); a
payload that no longer decodes is shown as its kind, never as an error page.
"""

from __future__ import annotations

from typing import Final

import msgspec

from sekimori.protocol.events import EVENT_KINDS, Payload
from sekimori.protocol.events.agent import (
    AgentLog,
    AgentStarted,
    AgentStopped,
    CollectorHealth,
    OutboxDropped,
)
from sekimori.protocol.events.device import MediaMounted, MediaUnmounted, UsbDevice
from sekimori.protocol.events.file import (
    FileCopiedToRemovable,
    FileCreated,
    FileDeleted,
    FileModified,
    FileMoved,
)
from sekimori.protocol.events.inventory import (
    Hardware,
    SoftwareDowngraded,
    SoftwareInstalled,
    SoftwareRemoved,
    SoftwareSnapshot,
    SoftwareUpgraded,
)
from sekimori.protocol.events.network import NetworkConnections
from sekimori.protocol.events.printing import PrintJob, PrintPage
from sekimori.protocol.events.process import ProcessStarted, ProcessStopped
from sekimori.protocol.events.session import (
    Boot,
    Logoff,
    Logon,
    Resume,
    Shutdown,
    Suspend,
)
from sekimori.protocol.events.web import WebVisit
from sekimori.protocol.events.window import FocusSpan, WindowActive, WindowFocus, WindowIdle
from sekimori.server.console.i18n import N_, gettext

__all__ = [
    "KIND_LABELS",
    "decode_payload",
    "duration_text",
    "kind_label",
    "manager_label",
    "summarize",
]

MAX_LINE: Final = 400

KIND_LABELS: Final[dict[str, str]] = {
    "agent.": N_("Agent (all)"),
    "agent.started": N_("Agent started"),
    "agent.stopped": N_("Agent stopped"),
    "agent.log": N_("Agent log"),
    "agent.outbox_dropped": N_("Events dropped"),
    "agent.collector_health": N_("Collector state"),
    "device.": N_("USB and media (all)"),
    "device.usb_attached": N_("USB device attached"),
    "device.usb_detached": N_("USB device removed"),
    "device.media_mounted": N_("Media mounted"),
    "device.media_unmounted": N_("Media unmounted"),
    "file.": N_("Files (all)"),
    "file.created": N_("File created"),
    "file.modified": N_("File modified"),
    "file.deleted": N_("File deleted"),
    "file.moved": N_("File moved"),
    "file.copied_to_removable": N_("Copied to removable media"),
    "inventory.": N_("Inventory (all)"),
    "inventory.hardware": N_("Hardware inventory"),
    "inventory.software": N_("Software inventory"),
    "inventory.software_installed": N_("Software installed"),
    "inventory.software_removed": N_("Software removed"),
    "inventory.software_upgraded": N_("Software upgraded"),
    "inventory.software_downgraded": N_("Software downgraded"),
    "network.": N_("Network (all)"),
    "network.connections": N_("Network connections"),
    "printing.": N_("Printing (all)"),
    "printing.job": N_("Print job"),
    "printing.page": N_("Printed page"),
    "process.": N_("Processes (all)"),
    "process.running": N_("Process running"),
    "process.started": N_("Process started"),
    "process.stopped": N_("Process stopped"),
    "session.": N_("Sessions (all)"),
    "session.logon": N_("Logon"),
    "session.logoff": N_("Logoff"),
    "session.boot": N_("Boot"),
    "session.shutdown": N_("Shutdown"),
    "session.suspend": N_("Suspend"),
    "session.resume": N_("Resume"),
    "web.": N_("Web (all)"),
    "web.visit": N_("Web visit"),
    "window.": N_("Windows (all)"),
    "window.focus": N_("Window focus"),
    "window.idle": N_("Idle"),
    "window.active": N_("Active again"),
}


def kind_label(kind: str) -> str:
    """An event kind (or a domain ending in a dot) in the user's language."""
    label = KIND_LABELS.get(kind)
    return gettext(label) if label else kind


def decode_payload(kind: str, payload: str) -> Payload | None:
    """The typed payload of a stored event, or None (unknown kind, old shape)."""
    struct = EVENT_KINDS.get(kind)
    if struct is None:
        return None
    try:
        return msgspec.json.decode(payload, type=struct)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def duration_text(us: int) -> str:
    seconds = max(0, us // 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _span(span: FocusSpan | None) -> str:
    if span is None:
        return ""
    title = gettext("(title hidden)") if span.window.title_hidden else span.window.title
    return f"{span.window.application} — {title} ({duration_text(span.duration_us)})"


def _line(p: Payload) -> str:  # one case per kind
    match p:
        case WebVisit():
            return f"{p.title} — {p.url}" if p.title else p.url
        case WindowFocus():
            ended = _span(p.previous)
            now = ""
            if p.window is not None:
                title = gettext("(title hidden)") if p.window.title_hidden else p.window.title
                now = f"→ {p.window.application} — {title}"
            return " ".join(part for part in (ended, now) if part)
        case WindowIdle():
            return gettext("Idle") + (f" · {_span(p.previous)}" if p.previous else "")
        case WindowActive():
            back = gettext("Back after %(time)s") % {"time": duration_text(p.idle_duration_us)}
            return back + (f" → {p.window.application} — {p.window.title}" if p.window else "")
        case ProcessStarted():
            return " ".join(p.argv) or p.exe or p.name
        case ProcessStopped():
            return f"{p.exe or p.name} ({duration_text(p.duration_us)})"
        case FileMoved():
            return f"{p.src} → {p.dest}"
        case FileCopiedToRemovable():
            return f"{p.path} → {p.device or p.mount_point}"
        case FileCreated() | FileModified() | FileDeleted():
            return p.path
        case UsbDevice():
            name = " ".join(x for x in (p.manufacturer, p.product) if x)
            return f"{name or gettext('USB device')} ({p.vendor_id}:{p.product_id}) {p.serial}"
        case MediaMounted() | MediaUnmounted():
            return f"{p.device} {p.mount_point} {p.label}".strip()
        case Logon() | Logoff():
            origin = p.address or p.host
            return f"{p.user} {p.tty}" + (f" ({origin})" if origin else "")
        case Boot():
            return gettext("The PC started")
        case Shutdown():
            return gettext("The PC shut down")
        case Suspend() | Resume():
            return duration_text(p.suspended_us)
        case PrintJob():
            return f"{p.printer}: {p.document} ({p.pages} p.)"
        case PrintPage():
            return f"{p.printer}: {p.document} ({p.page})"
        case SoftwareInstalled() | SoftwareRemoved():
            return f"{p.name} {p.version}{_ecosystem(p.manager)}"
        case SoftwareUpgraded() | SoftwareDowngraded():
            return f"{p.name} {p.from_version} → {p.to_version}{_ecosystem(p.manager)}"
        case SoftwareSnapshot():
            return gettext("%(count)d packages") % {"count": len(p.packages)}
        case Hardware():
            return f"{p.dmi.system_vendor} {p.dmi.product_name} · {p.os.pretty_name}".strip()
        case NetworkConnections():
            shown = ", ".join(
                f"{c.exe or '?'} → {c.remote_address}:{c.remote_port}" for c in p.connections[:3]
            )
            more = len(p.connections) - 3
            return shown + (f" (+{more})" if more > 0 else "")
        case CollectorHealth():
            return f"{p.collector}: {p.status} {p.reason}".strip()
        case AgentStarted():
            return gettext("Agent %(version)s started") % {"version": p.version}
        case AgentStopped():
            return p.reason
        case AgentLog():
            return f"[{p.level}] {p.source}: {p.message}"
        case OutboxDropped():
            return gettext("%(count)d events dropped (outbox full)") % {"count": p.count}
    return ""


# Package managers as the console names them: the language ecosystems by their
# language, since "requests" or "debug" alone does not say it is a library of one.
_MANAGER_LABELS: Final[dict[str, str]] = {
    "pypi": "Python (PyPI)",
    "npm": "Node.js (npm)",
}


def manager_label(manager: str) -> str:
    """The console's name for a package manager (proper names: not translated)."""
    return _MANAGER_LABELS.get(manager, manager)


def _ecosystem(manager: str) -> str:
    return f" · {_MANAGER_LABELS[manager]}" if manager in _MANAGER_LABELS else ""


def summarize(kind: str, payload: str) -> str:
    """The event's one-line summary (at most MAX_LINE characters)."""
    decoded = decode_payload(kind, payload)
    if decoded is None:
        return ""
    line = _line(decoded)
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"
