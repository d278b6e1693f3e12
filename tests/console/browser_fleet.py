"""A small fleet for the browser tests: one PC in "sales", one in "hr", each with an
hour of activity of every kind the reports show, stored as ingest stores it."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.events.device import UsbAttached
from sekimori.protocol.events.file import FileCopiedToRemovable
from sekimori.protocol.events.inventory import (
    Cpu,
    Disk,
    Dmi,
    Hardware,
    Kernel,
    NetworkInterface,
    OperatingSystem,
    Package,
    SoftwareSnapshot,
)
from sekimori.protocol.events.session import Logoff, Logon
from sekimori.protocol.events.web import WebVisit
from sekimori.protocol.events.window import FocusSpan, WindowFocus, WindowInfo
from tests.console.seed import SeedEvent, add_device, add_events

__all__ = ["Fleet", "SeededPC", "seed_fleet"]

MINUTE_US = 60_000_000


@dataclass(frozen=True, slots=True)
class SeededPC:
    """What the tests look for on one seeded PC."""

    device_id: str
    hostname: str
    group: str
    os_user: str
    url: str
    title: str
    host: str
    serial: str
    package: str
    app: str
    usb_product: str
    copied_file: str


@dataclass(frozen=True, slots=True)
class Fleet:
    sales: SeededPC
    hr: SeededPC


def _hardware(pc: SeededPC) -> Hardware:
    return Hardware(
        hostname=pc.hostname,
        cpu=Cpu(
            model="Intel(R) Core(TM) i5-1345U",
            vendor="GenuineIntel",
            architecture="x86_64",
            sockets=1,
            cores=10,
            threads=12,
        ),
        memory_bytes=16 * 1024**3,
        swap_bytes=2 * 1024**3,
        disks=[
            Disk(
                name="nvme0n1",
                model="PC SN740",
                vendor="WDC",
                serial="23480R801234",
                size_bytes=512 * 1000**3,
                removable=False,
                rotational=False,
                partitions=[],
            )
        ],
        interfaces=[
            NetworkInterface(
                name="enp0s31f6",
                mac="8c:16:45:aa:bb:cc",
                addresses=["192.0.2.15/24"],
                up=True,
                mtu=1500,
                speed_mbps=1000,
                physical=True,
            )
        ],
        dmi=Dmi(
            system_vendor="LENOVO", product_name="ThinkPad T14 Gen 4", product_serial=pc.serial
        ),
        os=OperatingSystem(
            id="debian",
            name="Debian GNU/Linux",
            version_id="12",
            version="12 (bookworm)",
            codename="bookworm",
            pretty_name="Debian GNU/Linux 12 (bookworm)",
        ),
        kernel=Kernel(name="Linux", release="6.1.0-28-amd64", version="#1 SMP Debian"),
        virtual_machine=False,
    )


def _window(pc: SeededPC, title: str) -> WindowInfo:
    return WindowInfo(
        window=0x3C00007,
        title=title,
        application=pc.app,
        instance=pc.app.lower(),
        pid=4242,
        exe=f"/usr/bin/{pc.app.lower()}",
        user=pc.os_user,
    )


def _activity(pc: SeededPC) -> list[SeedEvent]:
    now = now_us()
    start = now - 50 * MINUTE_US
    user = pc.os_user
    focus_end = start + 20 * MINUTE_US
    return [
        SeedEvent("inventory.hardware", _hardware(pc), time_us=start - 10 * MINUTE_US),
        SeedEvent(
            "inventory.software",
            SoftwareSnapshot(
                packages=[
                    Package("dpkg", pc.package, "1.2.3-1", "amd64", pc.package, "1.2.3-1"),
                    Package("dpkg", "bash", "5.2.15-2", "amd64", "bash", "5.2.15-2"),
                ],
                managers=["dpkg"],
                errors=[],
            ),
            time_us=start - 10 * MINUTE_US,
        ),
        SeedEvent(
            "session.logon",
            Logon(user=user, tty=":0", host=":0"),
            os_user=user,
            time_us=start,
        ),
        SeedEvent(
            "window.focus",
            WindowFocus(cause="focus", window=_window(pc, pc.title), previous=None),
            os_user=user,
            time_us=start + MINUTE_US,
        ),
        SeedEvent(
            "web.visit",
            WebVisit(
                url=pc.url, title=pc.title, host=pc.host, browser="chromium", profile="Default"
            ),
            os_user=user,
            time_us=start + 2 * MINUTE_US,
        ),
        SeedEvent(
            "device.usb_attached",
            UsbAttached(
                port="2-1",
                bus=2,
                address=7,
                vendor_id="0781",
                product_id="5583",
                interface_classes=["08"],
                manufacturer="SanDisk",
                product=pc.usb_product,
                serial="4C530001",
            ),
            os_user=user,
            time_us=start + 5 * MINUTE_US,
        ),
        SeedEvent(
            "file.copied_to_removable",
            FileCopiedToRemovable(
                path=f"/media/{user}/USB/{pc.copied_file}",
                operation="created",
                size=48_213,
                owner=user,
                mount_point=f"/media/{user}/USB",
                device="/dev/sdb1",
            ),
            os_user=user,
            time_us=start + 6 * MINUTE_US,
        ),
        SeedEvent(
            "window.focus",
            WindowFocus(
                cause="focus",
                window=None,
                previous=FocusSpan(
                    window=_window(pc, pc.title),
                    start_us=start + MINUTE_US,
                    duration_us=focus_end - (start + MINUTE_US),
                ),
            ),
            os_user=user,
            time_us=focus_end,
        ),
        SeedEvent(
            "session.logoff",
            Logoff(user=user, tty=":0", host=":0"),
            os_user=user,
            time_us=now - 5 * MINUTE_US,
        ),
    ]


def seed_fleet(engine: sa.Engine) -> Fleet:
    """Two PCs with their inventory and an hour of activity each."""
    pcs = {}
    for group, hostname, user, site, app in (
        ("sales", "sales-pc-01", "tanaka", "crm.example.jp", "Chromium"),
        ("hr", "hr-pc-01", "suzuki", "payroll.example.jp", "LibreOffice"),
    ):
        device_id = add_device(engine, hostname, group=group, last_seen_us=now_us())
        pc = SeededPC(
            device_id=device_id,
            hostname=hostname,
            group=group,
            os_user=user,
            url=f"https://{site}/quotes/2291?view=full",
            title=f"Quote 2291 — {site}",
            host=site,
            serial=f"PF-{group.upper()}-4711",
            package=f"{group}-toolkit",
            app=app,
            usb_product=f"Cruzer {group.title()}",
            copied_file=f"{group}-customers.xlsx",
        )
        add_events(engine, device_id, _activity(pc))
        pcs[group] = pc
    return Fleet(sales=pcs["sales"], hr=pcs["hr"])
