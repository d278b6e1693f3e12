"""A device's software tab with the language ecosystems (pypi, npm) beside dpkg, against
a real server: the package-manager filter, the managers' names, and their changes in
the tab and in the log search."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing

import pytest

from sekimori.clock import now_us
from sekimori.protocol.events.inventory import (
    Manager,
    Package,
    SoftwareDowngraded,
    SoftwareInstalled,
    SoftwareSnapshot,
)
from tests.console.conftest import ConsoleClient, as_user
from tests.console.seed import SeedEvent, add_device, add_events
from tests.processes import ServerProcess

PACKAGE_ROW = re.compile(r'<tr data-package="([^"]+)">.*?data-manager="([^"]+)">([^<]*)</td>')


def pkg(manager: Manager, name: str, version: str, arch: str = "") -> Package:
    return Package(manager, name, version, arch, name, version)


@pytest.fixture(scope="module")
def device(console_server: ServerProcess) -> str:
    engine = console_server.engine()
    device_id = add_device(engine, "dev-pc-01", group="sales", connected=True)
    t0 = now_us() - 60_000_000
    snapshot = SoftwareSnapshot(
        packages=[
            pkg("dpkg", "python3-requests", "2.28.1+dfsg-1", "all"),
            pkg("dpkg", "nodejs", "20.20.2-1nodesource1", "amd64"),
            pkg("pypi", "requests", "2.32.3"),
            pkg("pypi", "urllib3", "2.2.3"),
            pkg("npm", "npm", "11.19.1"),
            pkg("npm", "@babel/core", "7.26.0"),
        ],
        managers=["dpkg", "pypi", "npm"],
        errors=["pypi: skipped /usr/local/lib/python3.11/dist-packages/x.dist-info: no METADATA"],
    )
    add_events(
        engine,
        device_id,
        [
            SeedEvent("inventory.software", snapshot, time_us=t0),
            SeedEvent(
                "inventory.software_downgraded",
                SoftwareDowngraded(
                    manager="pypi",
                    name="urllib3",
                    architecture="",
                    from_version="2.3.0",
                    to_version="2.2.3",
                    source="urllib3",
                    source_version="2.2.3",
                ),
                time_us=t0 + 1,
            ),
            SeedEvent(
                "inventory.software_installed",
                SoftwareInstalled(
                    manager="npm",
                    name="@babel/core",
                    architecture="",
                    version="7.26.0",
                    source="@babel/core",
                    source_version="7.26.0",
                ),
                time_us=t0 + 2,
            ),
        ],
    )
    return device_id


@pytest.fixture(scope="module")
def alice(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with closing(as_user(console_server, "alice")) as http:
        yield http


def test_every_manager_is_named_and_the_skips_are_shown(alice: ConsoleClient, device: str) -> None:
    page = alice.get(f"/devices/{device}?tab=software").text
    assert PACKAGE_ROW.findall(page) == [
        ("@babel/core", "npm", "Node.js (npm)"),
        ("nodejs", "dpkg", "dpkg"),
        ("npm", "npm", "Node.js (npm)"),
        ("python3-requests", "dpkg", "dpkg"),
        ("requests", "pypi", "Python (PyPI)"),
        ("urllib3", "pypi", "Python (PyPI)"),
    ]
    select = page[page.index('<select name="manager">') :]
    select = select[: select.index("</select>")]
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select)
    assert options == [
        ("", "All"),
        ("dpkg", "dpkg"),
        ("pypi", "Python (PyPI)"),
        ("npm", "Node.js (npm)"),
    ]
    assert "x.dist-info: no METADATA" in page
    # The changes say which ecosystem a bare library name belongs to.
    assert "urllib3 2.3.0 → 2.2.3 · Python (PyPI)" in page
    assert "@babel/core 7.26.0 · Node.js (npm)" in page


def test_the_manager_filter(alice: ConsoleClient, device: str) -> None:
    page = alice.get(f"/devices/{device}?tab=software&manager=pypi").text
    assert [row[0] for row in PACKAGE_ROW.findall(page)] == ["requests", "urllib3"]
    assert "Packages found: 2" in page
    assert '<option value="pypi" selected>' in page
    both = alice.get(f"/devices/{device}?tab=software&manager=npm&pkg=babel").text
    assert [row[0] for row in PACKAGE_ROW.findall(both)] == ["@babel/core"]
    # A manager the device does not report is no filter at all.
    bogus = alice.get(f"/devices/{device}?tab=software&manager=rpm").text
    assert len(PACKAGE_ROW.findall(bogus)) == 6
    assert not re.search(r'<option value="(dpkg|pypi|npm)" selected', bogus)


def test_the_log_search_finds_language_package_changes_by_manager(
    alice: ConsoleClient, device: str
) -> None:
    page = alice.get(f"/logs?device={device}&q=pypi&since=24h").text
    rows = re.findall(r"<tr data-seq=", page)
    assert len(rows) == 1
    assert "urllib3" in page and "@babel/core" not in page
