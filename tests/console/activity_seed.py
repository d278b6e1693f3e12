"""Realistic events of every kind, built from the real payload classes, for the log
search and report tests (stored with tests.console.seed.add_events, as ingest does)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final

from sekimori.protocol.events import EVENT_KINDS, Payload
from sekimori.protocol.events.agent import (
    ActionOutcome,
    AgentLog,
    AgentStarted,
    AgentStopped,
    CollectorHealth,
    NoticeUpdated,
    OutboxDropped,
    PolicyApplication,
)
from sekimori.protocol.events.device import MediaMounted, MediaUnmounted, UsbAttached, UsbDetached
from sekimori.protocol.events.file import (
    FileCopiedToRemovable,
    FileCreated,
    FileDeleted,
    FileModified,
    FileMoved,
)
from sekimori.protocol.events.inventory import (
    Cpu,
    Dmi,
    Hardware,
    Kernel,
    OperatingSystem,
    Package,
    SoftwareDowngraded,
    SoftwareInstalled,
    SoftwareRemoved,
    SoftwareSnapshot,
    SoftwareUpgraded,
)
from sekimori.protocol.events.network import Connection, NetworkConnections
from sekimori.protocol.events.printing import PrintJob, PrintPage
from sekimori.protocol.events.process import ProcessRunning, ProcessStarted, ProcessStopped
from sekimori.protocol.events.screen import ScreenFrame
from sekimori.protocol.events.session import Boot, Logoff, Logon, Resume, Shutdown, Suspend
from sekimori.protocol.events.web import WebVisit
from sekimori.protocol.events.window import (
    FocusSpan,
    WindowActive,
    WindowFocus,
    WindowIdle,
    WindowInfo,
)
from tests.console.seed import SeedEvent

__all__ = [
    "SAMPLES",
    "every_kind",
    "focus",
    "logoff",
    "logon",
    "removable_copy",
    "usb",
    "visit",
    "window",
]

MINUTE = 60_000_000


def window(application: str, title: str, user: str = "taro") -> WindowInfo:
    return WindowInfo(
        window=0x1C00007,
        title=title,
        application=application,
        instance=application.lower(),
        pid=4242,
        exe=f"/usr/bin/{application.lower()}",
        user=user,
    )


def visit(url: str, title: str, user: str, time_us: int) -> SeedEvent:
    host = url.split("://", 1)[1].split("/", 1)[0]
    payload = WebVisit(url=url, title=title, host=host, browser="chromium", profile="Default")
    return SeedEvent("web.visit", payload, user, time_us)


def focus(
    application: str,
    title: str,
    duration_us: int,
    user: str,
    time_us: int,
    *,
    kind: str = "window.focus",
) -> SeedEvent:
    """An event ending a focus span of ``duration_us`` on the given window at ``time_us``."""
    span = FocusSpan(
        window=window(application, title, user),
        start_us=time_us - duration_us,
        duration_us=duration_us,
    )
    payload: Payload
    if kind == "window.idle":
        payload = WindowIdle(idle_since_us=time_us, threshold_ms=300_000, previous=span)
    else:
        payload = WindowFocus(cause="focus", window=window("XTerm", "bash", user), previous=span)
    return SeedEvent(kind, payload, user, time_us)


def logon(user: str, time_us: int, tty: str = ":0") -> SeedEvent:
    payload = Logon(user=user, tty=tty, host=":0", login_time_us=time_us)
    return SeedEvent("session.logon", payload, user, time_us)


def logoff(user: str, time_us: int, tty: str = ":0") -> SeedEvent:
    return SeedEvent("session.logoff", Logoff(user=user, tty=tty, host=":0"), user, time_us)


def removable_copy(path: str, size: int | None, user: str, time_us: int) -> SeedEvent:
    payload = FileCopiedToRemovable(
        path=path,
        operation="created",
        size=size,
        owner=user,
        mount_point="/media/" + user + "/STICK",
        device="/dev/sdb1",
    )
    return SeedEvent("file.copied_to_removable", payload, user, time_us)


def usb(
    vendor: str,
    product_id: str,
    serial: str,
    time_us: int,
    *,
    category: str = "mass_storage",
    product: str = "Cruzer Blade",
    user: str | None = None,
    kind: str = "device.usb_attached",
) -> SeedEvent:
    cls = UsbAttached if kind == "device.usb_attached" else UsbDetached
    payload = cls(
        port="2-1.4",
        bus=2,
        address=7,
        vendor_id=vendor,
        product_id=product_id,
        interface_classes=["08"] if category == "mass_storage" else ["03"],
        manufacturer="SanDisk" if category == "mass_storage" else "Logitech",
        product=product,
        serial=serial,
        category=category,  # type: ignore[arg-type]
    )
    return SeedEvent(kind, payload, user, time_us)


def _hardware() -> Hardware:
    return Hardware(
        hostname="pc-01",
        cpu=Cpu(
            model="Intel Core i5",
            vendor="GenuineIntel",
            architecture="x86_64",
            sockets=1,
            cores=4,
            threads=8,
        ),
        memory_bytes=16 << 30,
        swap_bytes=2 << 30,
        disks=[],
        interfaces=[],
        dmi=Dmi(system_vendor="LENOVO", product_name="ThinkPad X1"),
        os=OperatingSystem(
            id="debian",
            name="Debian GNU/Linux",
            version_id="12",
            version="12 (bookworm)",
            codename="bookworm",
            pretty_name="Debian GNU/Linux 12 (bookworm)",
        ),
        kernel=Kernel(name="Linux", release="6.1.0-18-amd64", version="#1 SMP"),
        virtual_machine=False,
    )


def _process(cls: type[ProcessStarted], user: str) -> ProcessStarted:
    return cls(
        pid=4242,
        ppid=1,
        name="soffice.bin",
        exe="/usr/lib/libreoffice/program/soffice.bin",
        argv=["soffice", "--calc", "/home/taro/売上_2024.ods"],
        user=user,
        uid=1000,
        start_time_us=1_700_000_000_000_000,
        hash_status="ok",
        sha256="ab" * 32,
    )


_PKG = {
    "manager": "dpkg",
    "name": "openssl",
    "architecture": "amd64",
    "source": "openssl",
}

# kind -> payload builder (given the OS user); one realistic event of each kind.
SAMPLES: Final[dict[str, Callable[[str], Payload]]] = {
    "agent.started": lambda u: AgentStarted(version="0.1.0", pid=812, hostname="pc-01"),
    "agent.stopped": lambda u: AgentStopped(reason="signal SIGTERM"),
    "agent.log": lambda u: AgentLog(level="warning", source="web", message="history locked"),
    "agent.outbox_dropped": lambda u: OutboxDropped(count=3, first_seq=10, last_seq=12, bytes=2048),
    "agent.collector_health": lambda u: CollectorHealth(
        collector="window", status="failed", reason="no display"
    ),
    "agent.policy_applied": lambda u: PolicyApplication(
        group="default", version=3, ok=True, restarted=["files"]
    ),
    "agent.notice_updated": lambda u: NoticeUpdated(
        version=3,
        enabled=True,
        paths=["/run/sekimori/notice.txt"],
        text_en="This PC records applications used.",
        text_ja="このPCは使用したアプリケーションを記録します。",
    ),
    "agent.action": lambda u: ActionOutcome(
        nonce="0f" * 16,
        action="kill_process",
        status="refused",
        signers=[],
        reason="kill_process needs an operator signature",
        requested_by="admin",
        device_count=1,
    ),
    # As the server stores it: the picture moved to the blob store, image emptied.
    "screen.frame": lambda u: ScreenFrame(
        monitor=0,
        width=768,
        height=432,
        screen_width=1920,
        screen_height=1080,
        format="jpeg",
        image=b"",
        sha256=hashlib.sha256(b"frame").hexdigest(),
        trigger="window_change",
        title="見積書.xlsx - LibreOffice Calc",
        application="libreoffice",
        user=u,
    ),
    "inventory.hardware": lambda u: _hardware(),
    "inventory.software": lambda u: SoftwareSnapshot(
        packages=[Package("dpkg", "bash", "5.2.15-2", "amd64", "bash", "5.2.15-2")],
        managers=["dpkg"],
        errors=[],
    ),
    "inventory.software_installed": lambda u: SoftwareInstalled(
        **_PKG,  # type: ignore[arg-type]
        version="3.0.11-1",
        source_version="3.0.11-1",
    ),
    "inventory.software_removed": lambda u: SoftwareRemoved(
        **_PKG,  # type: ignore[arg-type]
        version="3.0.11-1",
        source_version="3.0.11-1",
    ),
    "inventory.software_upgraded": lambda u: SoftwareUpgraded(
        **_PKG,  # type: ignore[arg-type]
        from_version="3.0.11-1",
        to_version="3.0.13-1",
        source_version="3.0.13-1",
    ),
    "inventory.software_downgraded": lambda u: SoftwareDowngraded(
        **_PKG,  # type: ignore[arg-type]
        from_version="3.0.13-1",
        to_version="3.0.11-1",
        source_version="3.0.11-1",
    ),
    "process.running": lambda u: _process(ProcessRunning, u),
    "process.started": lambda u: _process(ProcessStarted, u),
    "process.stopped": lambda u: ProcessStopped(
        pid=4242,
        ppid=1,
        name="soffice.bin",
        exe="/usr/lib/libreoffice/program/soffice.bin",
        user=u,
        uid=1000,
        start_time_us=1_700_000_000_000_000,
        duration_us=90 * MINUTE,
        exact_time=True,
    ),
    "session.logon": lambda u: Logon(user=u, tty="pts/0", host="10.0.0.5", remote=True),
    "session.logoff": lambda u: Logoff(user=u, tty="pts/0", host="10.0.0.5", remote=True),
    "session.boot": lambda u: Boot(boot_id="b1", boot_time_us=1_700_000_000_000_000),
    "session.shutdown": lambda u: Shutdown(
        boot_id="b0", last_seen_us=1_700_000_000_000_000, agent_stopped=True
    ),
    "session.suspend": lambda u: Suspend(suspended_us=30 * MINUTE),
    "session.resume": lambda u: Resume(suspended_us=30 * MINUTE),
    "window.focus": lambda u: WindowFocus(
        cause="focus",
        window=window("Chromium", "社内ポータル - Chromium", u),
        previous=FocusSpan(window=window("XTerm", "vim notes.txt", u), start_us=1, duration_us=5),
    ),
    "window.idle": lambda u: WindowIdle(idle_since_us=1, threshold_ms=300_000, previous=None),
    "window.active": lambda u: WindowActive(
        idle_since_us=1, idle_duration_us=10 * MINUTE, window=window("XTerm", "top", u)
    ),
    "web.visit": lambda u: WebVisit(
        url="https://intranet.example.co.jp/wiki/手順書",
        title="手順書 - 社内Wiki",
        host="intranet.example.co.jp",
        browser="chromium",
        profile="Default",
    ),
    "file.created": lambda u: FileCreated(path=f"/home/{u}/Documents/見積書.xlsx", size=18_432),
    "file.modified": lambda u: FileModified(path=f"/home/{u}/Documents/見積書.xlsx", size=19_000),
    "file.deleted": lambda u: FileDeleted(path=f"/home/{u}/Documents/old.txt"),
    "file.moved": lambda u: FileMoved(
        src=f"/home/{u}/Documents/a.pdf", dest=f"/home/{u}/.local/share/Trash/files/a.pdf"
    ),
    "file.copied_to_removable": lambda u: FileCopiedToRemovable(
        path="/media/stick/顧客リスト.csv", operation="created", size=52_000, device="/dev/sdb1"
    ),
    "device.usb_attached": lambda u: UsbAttached(
        port="2-1",
        bus=2,
        address=5,
        vendor_id="0781",
        product_id="5567",
        interface_classes=["08"],
        manufacturer="SanDisk",
        product="Cruzer Blade",
        serial="4C530001",
        category="mass_storage",
    ),
    "device.usb_detached": lambda u: UsbDetached(
        port="2-1",
        bus=2,
        address=5,
        vendor_id="0781",
        product_id="5567",
        interface_classes=["08"],
        category="mass_storage",
    ),
    "device.media_mounted": lambda u: MediaMounted(
        mount_point="/media/stick", device="/dev/sdb1", fstype="vfat", label="STICK"
    ),
    "device.media_unmounted": lambda u: MediaUnmounted(
        mount_point="/media/stick", device="/dev/sdb1", fstype="vfat", label="STICK"
    ),
    "printing.job": lambda u: PrintJob(
        printer="office-mfp", user=u, job_id=77, pages=3, document="請求書.pdf"
    ),
    "printing.page": lambda u: PrintPage(
        printer="office-mfp", user=u, job_id=78, page=1, document="memo.txt"
    ),
    "network.connections": lambda u: NetworkConnections(
        period_start_us=1,
        period_end_us=2,
        connections=[
            Connection(
                pid=4242,
                exe="/usr/bin/curl",
                user=u,
                protocol="tcp",
                remote_address="203.0.113.9",
                remote_port=443,
                local_ports=[50000],
                count=1,
                first_seen_us=1,
                last_seen_us=2,
            )
        ],
    ),
}


def every_kind(user: str, time_us: int, step_us: int = 1_000_000) -> list[SeedEvent]:
    """One event of every known kind, a second apart from ``time_us`` on."""
    missing = set(EVENT_KINDS) - set(SAMPLES)
    assert not missing, f"add samples for {sorted(missing)}"
    return [
        SeedEvent(kind, build(user), user, time_us + n * step_us)
        for n, (kind, build) in enumerate(SAMPLES.items())
    ]
