"""The device list and a device's page against a real server: search, filters,
sorting, paging, htmx partials, group scoping by URL and by menu, the audited
timeline, and revocation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import pytest

from sekimori.clock import now_us
from sekimori.protocol.events.agent import CollectorHealth
from sekimori.protocol.events.inventory import (
    Cpu,
    Disk,
    Dmi,
    Hardware,
    Kernel,
    NetworkInterface,
    OperatingSystem,
    Package,
    SoftwareInstalled,
    SoftwareSnapshot,
)
from sekimori.protocol.events.process import ProcessStarted
from sekimori.protocol.events.web import WebVisit
from sekimori.protocol.events.window import FocusSpan, WindowFocus, WindowInfo
from sekimori.server.store.audit import search_audit
from sekimori.server.store.devices import get_device, revoke_device
from tests.console.conftest import ConsoleClient, as_user
from tests.console.seed import SeedEvent, add_device, add_events
from tests.processes import ServerProcess

ROW = re.compile(r'<tr data-device-id="([0-9a-f-]+)">')
MINUTE = 60_000_000


@dataclass(frozen=True)
class Fleet:
    sales_online: str
    sales_old_agent: str
    sales_revoked: str
    hr_pc: str
    bulk: list[str]


def hardware(vendor: str, serial: str) -> Hardware:
    return Hardware(
        hostname="sales-pc-01",
        cpu=Cpu(
            model="Intel(R) Core(TM) i5-8250U",
            vendor="GenuineIntel",
            architecture="x86_64",
            sockets=1,
            cores=4,
            threads=8,
        ),
        memory_bytes=16 * 1024**3,
        swap_bytes=0,
        disks=[
            Disk(
                name="nvme0n1",
                model="Samsung SSD 970",
                vendor="",
                serial="S4EWNX0M123456",
                size_bytes=512 * 1024**3,
                removable=False,
                rotational=False,
                partitions=[],
            )
        ],
        interfaces=[
            NetworkInterface(
                name="enp0s31f6",
                mac="54:e1:ad:12:34:56",
                addresses=["192.0.2.10/24", "2001:db8::10/64"],
                up=True,
                mtu=1500,
                speed_mbps=1000,
                physical=True,
            )
        ],
        dmi=Dmi(system_vendor=vendor, product_name="ThinkPad X1 Carbon", product_serial=serial),
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


def window(app: str, title: str) -> WindowInfo:
    return WindowInfo(
        window=1, title=title, application=app, instance=app.lower(), pid=10, exe="", user="taro"
    )


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> Fleet:
    engine = console_server.engine()
    now = now_us()
    online = add_device(
        engine, "sales-pc-01", group="sales", connected=True, last_seen_us=now + 60 * MINUTE
    )
    old = add_device(engine, "sales-pc-02", group="sales", agent_version="0.0.9")
    revoked = add_device(engine, "sales-pc-03", group="sales")
    revoke_device(engine, revoked)
    hr = add_device(engine, "hr-pc-01", group="hr", os="windows", os_version="11")
    bulk = [
        add_device(engine, f"bulk-{i:03d}", group="bulk", last_seen_us=now - i * MINUTE)
        for i in range(60)
    ]
    t0 = now - 30 * MINUTE
    add_events(
        engine,
        online,
        [
            SeedEvent("inventory.hardware", hardware("OldVendor", "OLD-SERIAL"), time_us=t0),
            SeedEvent("inventory.hardware", hardware("LENOVO", "PF1ABCDE"), time_us=t0 + 1),
            SeedEvent(
                "agent.collector_health",
                CollectorHealth(collector="web", status="failed", reason="boom"),
                time_us=t0,
            ),
            SeedEvent(
                "agent.collector_health",
                CollectorHealth(collector="web", status="running"),
                time_us=t0 + 2,
            ),
            SeedEvent(
                "agent.collector_health",
                CollectorHealth(collector="processes", status="disabled", reason="off by policy"),
                time_us=t0 + 3,
            ),
            SeedEvent(
                "inventory.software",
                SoftwareSnapshot(
                    packages=[
                        Package("dpkg", "openssl", "3.0.11-1", "amd64", "openssl", "3.0.11-1"),
                        Package("dpkg", "libreoffice-calc", "4:7.4", "amd64", "libreoffice", "7"),
                        Package("snap", "firefox", "121.0", "amd64", "firefox", "121.0"),
                    ],
                    managers=["dpkg", "snap"],
                    errors=[],
                ),
                time_us=t0 + 4,
            ),
            SeedEvent(
                "inventory.software_installed",
                SoftwareInstalled(
                    manager="dpkg",
                    name="sl",
                    architecture="amd64",
                    version="5.02-1",
                    source="sl",
                    source_version="5.02-1",
                ),
                time_us=t0 + 5,
            ),
            SeedEvent(
                "web.visit",
                WebVisit(
                    url="https://intranet.example/wiki/Budget",
                    title="Budget 2026",
                    host="intranet.example",
                    browser="chromium",
                    profile="Default",
                ),
                os_user="taro",
                time_us=t0 + 6,
            ),
            SeedEvent(
                "window.focus",
                WindowFocus(
                    cause="focus",
                    window=window("Chromium", "Budget 2026"),
                    previous=FocusSpan(
                        window=window("XTerm", "taro@sales-pc-01: ~"),
                        start_us=t0 - 95_000_000,
                        duration_us=95_000_000,
                    ),
                ),
                os_user="taro",
                time_us=t0 + 7,
            ),
            SeedEvent(
                "process.started",
                ProcessStarted(
                    pid=4242,
                    ppid=1,
                    name="rsync",
                    exe="/usr/bin/rsync",
                    argv=["rsync", "-a", "/home/taro/docs", "/media/usb/"],
                    user="taro",
                    uid=1000,
                    start_time_us=t0 + 8,
                    hash_status="disabled",
                ),
                os_user="taro",
                time_us=t0 + 8,
            ),
        ],
    )
    return Fleet(online, old, revoked, hr, bulk)


def ids(html: str) -> list[str]:
    return ROW.findall(html)


def count_of(html: str) -> int:
    found = re.search(r"Devices found: (\d+)", html)
    assert found, html
    return int(found.group(1))


@pytest.fixture(scope="module")
def alice(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with closing(as_user(console_server, "alice")) as http:
        yield http


@pytest.fixture(scope="module")
def bob(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with closing(as_user(console_server, "bob")) as http:
        yield http


def test_list_pages_fifty_at_a_time_with_the_total(alice: ConsoleClient, fleet: Fleet) -> None:
    first = alice.get("/devices")
    assert first.status_code == 200
    assert count_of(first.text) == 64
    assert len(ids(first.text)) == 50
    assert "page 1 of 2" in first.text
    assert ids(first.text)[:3] == fleet.bulk[:3]  # sorted by host name
    second = alice.get("/devices?page=2")
    assert len(ids(second.text)) == 14
    assert set(ids(first.text)).isdisjoint(ids(second.text))
    # A page past the end shows the last page, not an error.
    assert ids(alice.get("/devices?page=99").text) == ids(second.text)


def test_search_by_hostname_or_id_prefix(alice: ConsoleClient, fleet: Fleet) -> None:
    sales = alice.get("/devices", params={"q": "SALES-pc"})
    assert sorted(ids(sales.text)) == sorted(
        [fleet.sales_online, fleet.sales_old_agent, fleet.sales_revoked]
    )
    by_id = alice.get("/devices", params={"q": fleet.hr_pc[:8]})
    assert ids(by_id.text) == [fleet.hr_pc]
    # LIKE wildcards are searched for literally.
    assert count_of(alice.get("/devices", params={"q": "%"}).text) == 0
    assert count_of(alice.get("/devices", params={"q": "bulk-00"}).text) == 10


def test_filters(alice: ConsoleClient, fleet: Fleet) -> None:
    def found(**params: str) -> list[str]:
        return ids(alice.get("/devices", params=params).text)

    assert found(group="hr") == [fleet.hr_pc]
    assert found(os="windows") == [fleet.hr_pc]
    assert found(status="online") == [fleet.sales_online]
    assert found(status="revoked") == [fleet.sales_revoked]
    assert count_of(alice.get("/devices?status=offline").text) == 62
    assert found(version="0.0.9") == [fleet.sales_old_agent]
    assert found(version="outdated") == [fleet.sales_old_agent]
    assert found(group="sales", status="offline") == [fleet.sales_old_agent]


def test_sorting(alice: ConsoleClient, fleet: Fleet) -> None:
    assert ids(alice.get("/devices?sort=-hostname").text)[0] == fleet.sales_revoked
    # Most recently seen first: the online device, then bulk-000, bulk-001, ...
    assert ids(alice.get("/devices?sort=-last_seen").text)[:3] == [
        fleet.sales_online,
        fleet.bulk[0],
        fleet.bulk[1],
    ]
    assert ids(alice.get("/devices?sort=group").text)[0] == fleet.bulk[0]
    assert ids(alice.get("/devices?sort=os").text)[-1] != fleet.hr_pc  # linux < windows
    windows_last = ids(alice.get("/devices?sort=os&page=2").text)[-1]
    assert windows_last == fleet.hr_pc
    assert ids(alice.get("/devices?sort=version").text)[0] == fleet.sales_old_agent
    # An unknown sort key falls back to the host name.
    assert ids(alice.get("/devices?sort=evil;drop").text)[0] == fleet.bulk[0]


def test_htmx_gets_only_the_table(alice: ConsoleClient, fleet: Fleet) -> None:
    partial = alice.get("/devices?q=hr-", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert partial.text.lstrip().startswith('<div id="devices-table">')
    assert "<html" not in partial.text
    assert ids(partial.text) == [fleet.hr_pc]
    full = alice.get("/devices?q=hr-")
    assert "<html" in full.text
    assert 'hx-trigger="keyup changed delay:300ms"' in full.text
    assert 'hx-target="#devices-table"' in full.text
    assert "Server-Timing" in full.headers or "server-timing" in full.headers


def test_a_group_limited_operator_sees_only_their_groups(bob: ConsoleClient, fleet: Fleet) -> None:
    listed = bob.get("/devices")
    assert sorted(ids(listed.text)) == sorted(
        [fleet.sales_online, fleet.sales_old_agent, fleet.sales_revoked]
    )
    assert count_of(listed.text) == 3
    # Another group's devices stay out whatever the URL asks.
    assert ids(bob.get("/devices?group=hr").text) == []
    assert ids(bob.get(f"/devices?q={fleet.hr_pc}").text) == []
    assert ">hr<" not in listed.text  # not offered as a filter either
    # Another group's device answers exactly like a device that does not exist.
    other = bob.get(f"/devices/{fleet.hr_pc}")
    missing = bob.get("/devices/00000000-0000-0000-0000-000000000000")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
    assert bob.get(f"/devices/{fleet.hr_pc}?tab=activity").status_code == 404
    assert bob.get(f"/devices/{fleet.sales_online}").status_code == 200


def test_menu_and_urls_by_role(console_server: ServerProcess, fleet: Fleet) -> None:
    with (
        closing(as_user(console_server, "dave")) as dave,
        closing(as_user(console_server, "carol")) as carol,
    ):
        _viewer_and_auditor(dave, carol, fleet)
    with closing(as_user(console_server, "bob")) as bob:
        menu = bob.get("/").text
    assert 'href="/devices"' in menu
    assert 'href="/enrollment"' in menu


def _viewer_and_auditor(dave: ConsoleClient, carol: ConsoleClient, fleet: Fleet) -> None:
    home = dave.get("/")
    assert home.status_code == 200
    assert 'href="/devices"' not in home.text
    assert 'href="/enrollment"' not in home.text
    assert f'href="/devices/{fleet.sales_online}"' not in home.text
    assert dave.get("/devices").status_code == 403
    assert dave.get(f"/devices/{fleet.sales_online}").status_code == 403
    assert dave.get("/enrollment").status_code == 403
    assert dave.submit(f"/devices/{fleet.sales_online}/revoke").status_code == 403

    assert 'href="/devices"' not in carol.get("/").text
    assert carol.get("/devices").status_code == 403
    assert carol.get(f"/devices/{fleet.sales_online}").status_code == 403


def test_overview_shows_the_newest_inventory_and_collector_health(
    alice: ConsoleClient, fleet: Fleet
) -> None:
    page = alice.get(f"/devices/{fleet.sales_online}")
    assert page.status_code == 200
    text = page.text
    assert "LENOVO" in text and "PF1ABCDE" in text
    assert "OldVendor" not in text  # the older inventory is not shown
    for shown in (
        "Intel(R) Core(TM) i5-8250U",
        "16.0 GiB",
        "S4EWNX0M123456",
        "512.0 GiB",
        "54:e1:ad:12:34:56",
        "192.0.2.10/24",
        "6.1.0-18-amd64",
        "Debian GNU/Linux 12 (bookworm)",
    ):
        assert shown in text, shown
    web = re.search(r'<tr data-collector="web">(.*?)</tr>', text, re.S)
    assert web and "running" in web.group(1) and "boom" not in web.group(1)
    assert "off by policy" in text
    assert 'class="badge online"' in text  # the device is online
    assert 'action="/devices/' in text  # the revoke form, for an operator/administrator


def test_software_tab_filters_packages_on_the_server(alice: ConsoleClient, fleet: Fleet) -> None:
    page = alice.get(f"/devices/{fleet.sales_online}?tab=software")
    packages = re.findall(r'data-package="([^"]+)"', page.text)
    assert packages == ["firefox", "libreoffice-calc", "openssl"]
    assert "sl 5.02-1" in page.text  # recent change
    found = alice.get(f"/devices/{fleet.sales_online}?tab=software&pkg=SSL")
    assert re.findall(r'data-package="([^"]+)"', found.text) == ["openssl"]


def test_timeline_is_readable_filtered_and_audited(
    console_server: ServerProcess, alice: ConsoleClient, fleet: Fleet
) -> None:
    page = alice.get(f"/devices/{fleet.sales_online}?tab=activity")
    assert page.status_code == 200
    kinds = re.findall(r'data-kind="([^"]+)"', page.text)
    assert kinds[:3] == ["process.started", "window.focus", "web.visit"]  # newest first
    assert "rsync -a /home/taro/docs /media/usb/" in page.text
    assert "Budget 2026 — https://intranet.example/wiki/Budget" in page.text
    assert "XTerm — taro@sales-pc-01: ~ (1:35)" in page.text
    entries = search_audit(
        console_server.engine(), actor="alice", action="activity.view_device"
    ).entries
    assert entries and entries[0].target == fleet.sales_online
    assert entries[0].detail_dict()["kind"] == "all"

    web = alice.get(f"/devices/{fleet.sales_online}?tab=activity&kind=web.")
    assert re.findall(r'data-kind="([^"]+)"', web.text) == ["web.visit"]
    latest = search_audit(
        console_server.engine(), actor="alice", action="activity.view_device"
    ).entries[0]
    assert latest.detail_dict()["kind"] == "web."


def test_timeline_pages(alice: ConsoleClient, console_server: ServerProcess) -> None:
    engine = console_server.engine()
    busy = add_device(engine, "busy-pc", group="busy")
    t0 = now_us() - 100 * MINUTE
    add_events(
        engine,
        busy,
        [
            SeedEvent(
                "agent.collector_health",
                CollectorHealth(collector=f"c{i:03d}", status="running"),
                time_us=t0 + i,
            )
            for i in range(120)
        ],
    )
    first = alice.get(f"/devices/{busy}?tab=activity")
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', first.text)]
    assert seqs == list(range(120, 70, -1))
    assert 'rel="next"' in first.text
    third = alice.get(f"/devices/{busy}?tab=activity&page=3")
    assert [int(s) for s in re.findall(r'data-seq="(\d+)"', third.text)] == list(range(20, 0, -1))
    assert 'rel="next"' not in third.text


def test_revocation_from_the_console(
    console_server: ServerProcess, alice: ConsoleClient, bob: ConsoleClient, fleet: Fleet
) -> None:
    engine = console_server.engine()
    # Another group's device: the same 404 as a missing one, and nothing changes.
    assert bob.submit(f"/devices/{fleet.hr_pc}/revoke").status_code == 404
    with engine.connect() as conn:
        hr = get_device(conn, fleet.hr_pc)
    assert hr is not None and hr.revoked_us is None
    # Without the CSRF token: refused.
    assert alice.post(f"/devices/{fleet.hr_pc}/revoke").status_code == 403

    response = alice.submit(f"/devices/{fleet.hr_pc}/revoke")
    assert response.status_code == 303
    with engine.connect() as conn:
        hr = get_device(conn, fleet.hr_pc)
    assert hr is not None and hr.revoked_us is not None
    entry = search_audit(engine, actor="alice", action="device.revoke").entries[0]
    assert entry.target == fleet.hr_pc
    assert entry.detail_dict()["result"] == "revoked"
    page = alice.get(f"/devices/{fleet.hr_pc}")
    assert 'class="badge revoked"' in page.text
    assert "revoke-confirm" not in page.text
