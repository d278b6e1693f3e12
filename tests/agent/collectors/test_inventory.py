"""The inventory collector against the real OS: a real .deb installed, upgraded,
downgraded and removed with dpkg (we are root), the real dpkg database and /sys.

rpm and flatpak are not installed here: the tests that need a second manager (a
manager that fails, rpm's version order) use real stand-in executables on PATH that
print recorded output of the real commands.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest

from sekimori.agent.collectors.base import CollectorError, Sink
from sekimori.agent.collectors.inventory import InventoryCollector, InventorySettings
from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.agent.collectors.supervisor import CollectorConfigError, Supervisor
from sekimori.agent.outbox import Outbox
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import Payload
from sekimori.protocol.events.inventory import (
    Hardware,
    Manager,
    Package,
    SoftwareDowngraded,
    SoftwareInstalled,
    SoftwareRemoved,
    SoftwareSnapshot,
    SoftwareUpgraded,
)

CHANGE_KINDS = (
    "inventory.software_installed",
    "inventory.software_removed",
    "inventory.software_upgraded",
    "inventory.software_downgraded",
)


# ---- helpers ---------------------------------------------------------------------------


def _dpkg(*args: str) -> None:
    """Run dpkg, waiting while another process (apt in a parallel test) holds its lock."""
    deadline = time.monotonic() + 120
    while True:
        result = subprocess.run(["dpkg", *args], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return
        if "lock" not in result.stderr or time.monotonic() > deadline:
            raise AssertionError(f"dpkg {' '.join(args)}: {result.stderr}")
        time.sleep(0.5)


def _build_deb(tmp_path: Path, name: str, version: str) -> Path:
    """A tiny real package, built with dpkg-deb."""
    root = tmp_path / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        f"Source: sekimori-test-src ({version}-src)\n"
        "Maintainer: Sekimori tests <tests@example.invalid>\n"
        "Description: inventory collector test package\n"
    )
    doc = root / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "version").write_text(version + "\n")
    deb = tmp_path / f"{name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


@pytest.fixture
def test_package(request: pytest.FixtureRequest) -> Iterator[str]:
    """A package name unique to the test, purged afterwards whatever happened."""
    name = f"sekimori-test-pkg-{request.node.name.replace('_', '-')[:40]}".lower()
    try:
        yield name
    finally:
        _dpkg("--purge", name)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    yield box
    box.close()


def _events(outbox: Outbox) -> list[tuple[str, Payload]]:
    return [
        (e.kind, decode_payload(e.kind, e.payload))
        for e in outbox.peek(0, max_events=100_000, max_bytes=1 << 31)
    ]


def _wait_for(
    outbox: Outbox, found: Callable[[list[tuple[str, Payload]]], bool], timeout: float = 20
) -> list[tuple[str, Payload]]:
    deadline = time.monotonic() + timeout
    while True:
        events = _events(outbox)
        if found(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"not found in {[k for k, _ in events]}")
        time.sleep(0.05)


def _changes(events: list[tuple[str, Payload]], name: str) -> list[tuple[str, Payload]]:
    return [(k, p) for k, p in events if k in CHANGE_KINDS and getattr(p, "name", None) == name]


def _snapshots(events: list[tuple[str, Payload]]) -> list[SoftwareSnapshot]:
    return [p for k, p in events if isinstance(p, SoftwareSnapshot)]


@contextmanager
def _running(outbox: Outbox, **settings: object) -> Iterator[InventoryCollector]:
    conf = msgspec.convert({"interval_seconds": 0.1, **settings}, InventorySettings)
    collector = InventoryCollector(conf, Sink(outbox, "inventory"))
    stop = threading.Event()
    # An exception in the thread fails the test (pytest's unhandled-thread-exception
    # warning, an error under -W error).
    thread = threading.Thread(target=collector.run, args=(stop,))
    thread.start()
    try:
        yield collector
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive(), "collector did not stop"


def _stand_in(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text("#!/bin/sh\n" + script)
    (bin_dir / name).chmod(0o755)


# ---- tests -----------------------------------------------------------------------------


def test_start_sends_hardware_and_software_but_no_changes(outbox: Outbox) -> None:
    with _running(outbox):
        events = _wait_for(outbox, lambda ev: bool(_snapshots(ev)))
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["inventory.hardware", "inventory.software"]
    assert not [k for k in kinds if k in CHANGE_KINDS], "first run must be a baseline"
    machine = events[0][1]
    assert isinstance(machine, Hardware)
    assert machine.cpu.cores >= 1 and machine.memory_bytes > 0
    assert "lo" in {i.name for i in machine.interfaces}
    assert machine.os.id and machine.kernel.release
    (snapshot,) = _snapshots(events)
    assert "dpkg" in snapshot.managers and snapshot.errors == []
    by_name = {p.name: p for p in snapshot.packages if p.manager == "dpkg"}
    real = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "dpkg"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert by_name["dpkg"].version == real
    assert by_name["python3"].source == "python3-defaults"


def test_install_upgrade_downgrade_remove(
    outbox: Outbox, tmp_path: Path, test_package: str
) -> None:
    v10 = _build_deb(tmp_path, test_package, "1.0")
    v11 = _build_deb(tmp_path, test_package, "1.1")
    with _running(outbox):
        _wait_for(outbox, lambda ev: bool(_snapshots(ev)))

        def changes_reach(n: int) -> Callable[[list[tuple[str, Payload]]], bool]:
            return lambda ev: len(_changes(ev, test_package)) >= n

        _dpkg("-i", str(v10))
        _wait_for(outbox, changes_reach(1))
        _dpkg("-i", str(v11))
        _wait_for(outbox, changes_reach(2))
        _dpkg("-i", str(v10))
        _wait_for(outbox, changes_reach(3))
        _dpkg("-r", test_package)
        events = _wait_for(outbox, changes_reach(4))
    assert _changes(events, test_package) == [
        (
            "inventory.software_installed",
            SoftwareInstalled(
                manager="dpkg",
                name=test_package,
                architecture="all",
                version="1.0",
                source="sekimori-test-src",
                source_version="1.0-src",
            ),
        ),
        (
            "inventory.software_upgraded",
            SoftwareUpgraded(
                manager="dpkg",
                name=test_package,
                architecture="all",
                from_version="1.0",
                to_version="1.1",
                source="sekimori-test-src",
                source_version="1.1-src",
            ),
        ),
        (
            "inventory.software_downgraded",
            SoftwareDowngraded(
                manager="dpkg",
                name=test_package,
                architecture="all",
                from_version="1.1",
                to_version="1.0",
                source="sekimori-test-src",
                source_version="1.0-src",
            ),
        ),
        (
            "inventory.software_removed",
            SoftwareRemoved(
                manager="dpkg",
                name=test_package,
                architecture="all",
                version="1.0",
                source="sekimori-test-src",
                source_version="1.0-src",
            ),
        ),
    ]
    # Only the one full round at start: checks send changes, not the whole list again.
    assert len(_snapshots(events)) == 1


def test_restart_reports_only_what_changed_while_down(
    outbox: Outbox, tmp_path: Path, test_package: str
) -> None:
    deb = _build_deb(tmp_path, test_package, "1.0")
    with _running(outbox):
        _wait_for(outbox, lambda ev: bool(_snapshots(ev)))
    first = _snapshots(_events(outbox))[0]
    _dpkg("-i", str(deb))  # while the agent is down
    with _running(outbox):
        events = _wait_for(outbox, lambda ev: len(_snapshots(ev)) == 2)
    second_start = [k for k, _ in events].index("inventory.hardware", 1)
    after = events[second_start:]
    mine = _changes(after, test_package)
    assert [(k, getattr(p, "version", None)) for k, p in mine] == [
        ("inventory.software_installed", "1.0")
    ]
    # Nothing else re-sent as a change: any other change must be real (a concurrent
    # apt run), i.e. a package whose presence or version really differs.
    before = {(p.name, p.architecture): p.version for p in first.packages}
    now = {(p.name, p.architecture): p.version for p in _snapshots(after)[0].packages}
    for kind, payload in after:
        if kind in CHANGE_KINDS:
            key = (getattr(payload, "name", ""), getattr(payload, "architecture", ""))
            assert before.get(key) != now.get(key), (kind, payload)


def test_excluded_packages_are_tracked_but_not_reported(
    outbox: Outbox, tmp_path: Path, test_package: str
) -> None:
    deb = _build_deb(tmp_path, test_package, "1.0")
    with _running(outbox, exclude_packages=["sekimori-test-*"], full_interval_seconds=0.5):
        _wait_for(outbox, lambda ev: bool(_snapshots(ev)))
        _dpkg("-i", str(deb))
        # The collector saw it (its cursor holds it) ...
        deadline = time.monotonic() + 20
        while test_package.encode() not in (outbox.cursor("collector.inventory") or b""):
            assert time.monotonic() < deadline, "install never seen"
            time.sleep(0.05)
        # ... and the next full list, made after, leaves it out too.
        seen = len(_snapshots(_events(outbox)))
        events = _wait_for(outbox, lambda ev: len(_snapshots(ev)) > seen)
    assert _changes(events, test_package) == []
    assert all(p.name != test_package for s in _snapshots(events) for p in s.packages)


def test_failing_manager_keeps_its_last_list_and_says_why(
    outbox: Outbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in flatpak (recorded output) that later fails like a broken install."""
    bin_dir = tmp_path / "bin"
    broken = tmp_path / "broken"
    _stand_in(
        bin_dir,
        "flatpak",
        f'if [ -e "{broken}" ]; then echo "error: No installations" >&2; exit 1; fi\n'
        'printf "org.mozilla.firefox\\t122.0\\tx86_64\\tstable\\n"\n',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with _running(outbox, managers=["flatpak"], full_interval_seconds=0.3):
        _wait_for(outbox, lambda ev: bool(_snapshots(ev)))
        broken.touch()
        events = _wait_for(outbox, lambda ev: any(s.errors for s in _snapshots(ev)))
    failed = next(s for s in _snapshots(events) if s.errors)
    assert failed.errors == [f"flatpak: {bin_dir}/flatpak list --app "
                             "--columns=application,version,arch,branch exited with 1: "
                             "error: No installations"]  # fmt: skip
    assert failed.managers == ["flatpak"]
    firefox = Package("flatpak", "org.mozilla.firefox", "122.0", "x86_64",
                      "org.mozilla.firefox", "122.0")  # fmt: skip
    assert failed.packages == [firefox]
    assert not [k for k, _ in events if k in CHANGE_KINDS], "a failure is not a removal"


def test_rpm_versions_use_rpm_order_and_kernels_coexist(
    outbox: Outbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in rpm printing recorded `rpm -qa` lines; the test swaps its output."""
    bin_dir = tmp_path / "bin"
    listing = tmp_path / "rpm.out"
    _stand_in(bin_dir, "rpm", f'exec cat "{listing}"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    bash = "bash\t(none)\t{v}\t1.el9\tx86_64\tbash-{v}-1.el9.src.rpm\n"
    kernel = "kernel-core\t(none)\t5.14.0\t{r}\tx86_64\tkernel-5.14.0-{r}.src.rpm\n"
    listing.write_text(bash.format(v="5.1.8~rc1") + kernel.format(r="284.el9"))
    with _running(outbox, managers=["rpm"], full_interval_seconds=0.2):
        _wait_for(outbox, lambda ev: bool(_snapshots(ev)))
        # 5.1.8 sorts after 5.1.8~rc1 for rpm; a second kernel is installed beside.
        listing.write_text(
            bash.format(v="5.1.8") + kernel.format(r="284.el9") + kernel.format(r="362.el9")
        )
        events = _wait_for(outbox, lambda ev: len([k for k, _ in ev if k in CHANGE_KINDS]) >= 2)
    changes = {(k, getattr(p, "name", "")): p for k, p in events if k in CHANGE_KINDS}
    upgraded = changes[("inventory.software_upgraded", "bash")]
    assert isinstance(upgraded, SoftwareUpgraded)
    assert (upgraded.from_version, upgraded.to_version) == ("5.1.8~rc1-1.el9", "5.1.8-1.el9")
    installed = changes[("inventory.software_installed", "kernel-core")]
    assert isinstance(installed, SoftwareInstalled)
    assert installed.version == "5.14.0-362.el9"
    assert len(changes) == 2


def test_unreadable_cursor_starts_a_new_baseline(outbox: Outbox) -> None:
    outbox.save_cursor("collector.inventory", b"\xc1 not msgpack")
    with _running(outbox):
        events = _wait_for(outbox, lambda ev: bool(_snapshots(ev)))
    assert not [k for k, _ in events if k in CHANGE_KINDS]
    cursor = outbox.cursor("collector.inventory")
    assert cursor is not None and b"dpkg" in cursor


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"interval_seconds": 0}, "interval_seconds and command_timeout_seconds must be > 0"),
        ({"command_timeout_seconds": -1}, "must be > 0"),
        ({"interval_seconds": 60, "full_interval_seconds": 10}, "full_interval_seconds must be"),
        ({"pypi_paths": ["venv/lib/python3.*/site-packages"]}, "must be absolute: .'venv/"),
        ({"npm_paths": ["/ok", "node_modules"]}, r"must be absolute: \['node_modules'\]"),
    ],
)
def test_bad_settings_are_a_permanent_error(
    outbox: Outbox, settings: dict[str, object], message: str
) -> None:
    conf = msgspec.convert(settings, InventorySettings)
    with pytest.raises(CollectorError, match=message) as caught:
        InventoryCollector(conf, Sink(outbox, "inventory"))
    assert caught.value.permanent


def test_registered_and_validated_by_the_supervisor(outbox: Outbox) -> None:
    assert COLLECTORS["inventory"] is InventoryCollector
    with pytest.raises(CollectorConfigError, match=r"collector 'inventory'.*managers"):
        Supervisor(outbox, COLLECTORS, {"inventory": {"managers": ["apt"]}})


# ---- language ecosystems: real dist-info and node_modules trees ------------------------


def _dist_info(root: Path, name: str, version: str) -> Path:
    d = root / f"{name}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return d


def _pip_replace(old: Path, name: str, version: str) -> None:
    """A new version in one step (one rename): no round can see neither or both."""
    (old / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    old.rename(old.with_name(f"{name}-{version}.dist-info"))


def _node_package(root: Path, name: str, version: str) -> None:
    """Install or replace a package: package.json written whole, then the scope
    directory's time moved (npm's own rename dance moves it too)."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "package.json.new").write_text(json.dumps({"name": name, "version": version}))
    (d / "package.json.new").rename(d / "package.json")
    now = time.time_ns()
    os.utime(d.parent, ns=(now, now))


def _change(kind: str, manager: Manager, name: str, *versions: str) -> tuple[str, Payload]:
    if len(versions) == 1:
        changed = SoftwareInstalled if kind.endswith("installed") else SoftwareRemoved
        v = versions[0]
        return kind, changed(
            manager=manager, name=name, architecture="", version=v, source=name,
            source_version=v,
        )  # fmt: skip
    moved = SoftwareDowngraded if kind.endswith("downgraded") else SoftwareUpgraded
    return kind, moved(
        manager=manager, name=name, architecture="", from_version=versions[0],
        to_version=versions[1], source=name, source_version=versions[1],
    )  # fmt: skip


def _count_changes(events: list[tuple[str, Payload]]) -> int:
    return len([k for k, _ in events if k in CHANGE_KINDS])


def _more_changes_than(n: int) -> Callable[[list[tuple[str, Payload]]], bool]:
    return lambda events: _count_changes(events) > n


def test_pypi_and_npm_changes_like_any_manager(outbox: Outbox, tmp_path: Path) -> None:
    """Extra roots from the settings (a venv, a node_modules), changed as pip and npm
    would: a new directory per version, the old one removed."""
    site = tmp_path / "venv/lib/python3.11/site-packages"
    modules = tmp_path / "app/node_modules"
    _dist_info(site, "Sekimori_Test", "1.0")
    _node_package(modules, "@sekimori/test", "1.0.0")
    (modules / "broken").mkdir()
    (modules / "broken/package.json").write_text("{not json")
    settings = {
        "managers": ["pypi", "npm"],
        "pypi_paths": [str(tmp_path / "venv/lib/python3.*/site-packages")],
        "npm_paths": [str(modules)],
    }
    steps: list[Callable[[], object]] = [
        lambda: _dist_info(site, "Sekimori_Test", "1.1"),  # a second version beside
        lambda: shutil.rmtree(site / "Sekimori_Test-1.0.dist-info"),
        # The same normalised name, an earlier version (PEP 440: rc before release).
        lambda: _pip_replace(site / "Sekimori_Test-1.1.dist-info", "sekimori.test", "1.1rc1"),
        lambda: _node_package(modules, "@sekimori/test", "1.1.0"),
        lambda: _node_package(modules, "@sekimori/test", "1.1.0-beta.1"),
        lambda: _node_package(modules, "@sekimori/test", "weird"),
        lambda: shutil.rmtree(modules / "@sekimori"),
    ]
    with _running(outbox, **settings):
        events = _wait_for(outbox, lambda ev: bool(_snapshots(ev)))
        (snapshot,) = _snapshots(events)
        for step in steps:
            seen = _count_changes(_events(outbox))
            step()
            _wait_for(outbox, _more_changes_than(seen))
        events = _events(outbox)
    assert snapshot.managers == ["pypi", "npm"]
    assert Package("pypi", "sekimori-test", "1.0", "", "sekimori-test", "1.0") in snapshot.packages
    npm_test = Package("npm", "@sekimori/test", "1.0.0", "", "@sekimori/test", "1.0.0")
    assert npm_test in snapshot.packages
    assert snapshot.errors == [
        f"npm: skipped {modules}/broken: package.json: not valid JSON for a package: "
        "JSON is malformed: object keys must be strings (byte 1)"
    ]
    changes = [(k, p) for k, p in events if k in CHANGE_KINDS and "sekimori" in str(p)]
    assert changes == [
        _change("inventory.software_installed", "pypi", "sekimori-test", "1.1"),
        _change("inventory.software_removed", "pypi", "sekimori-test", "1.0"),
        _change("inventory.software_downgraded", "pypi", "sekimori-test", "1.1", "1.1rc1"),
        _change("inventory.software_upgraded", "npm", "@sekimori/test", "1.0.0", "1.1.0"),
        _change("inventory.software_downgraded", "npm", "@sekimori/test", "1.1.0", "1.1.0-beta.1"),
        # Not SemVer: no order, reported as an upgrade.
        _change("inventory.software_upgraded", "npm", "@sekimori/test", "1.1.0-beta.1", "weird"),
        _change("inventory.software_removed", "npm", "@sekimori/test", "weird"),
    ]
