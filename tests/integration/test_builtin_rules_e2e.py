"""Issue 5's "done when" for the built-in rule pack, end to end: each built-in rule fires
on the real event its collector produces, and stays silent on a near miss.

One real server (``python -m sekimori server``, SQLite) and one real enrolled agent
(``python -m sekimori agent run``) with its real collectors, each pointed at test
inputs the way its unit tests point it (tests/agent/collectors/):

* devices — a sysfs-like /sys/bus/usb/devices tree (``usb_root``). SIMULATED EDGE: no
  USB controller or device exists on this machine and nothing can be plugged in, so
  "plugging a stick in" is writing its device directory (recorded attributes of a real
  SanDisk stick) into that tree, which the collector reads exactly as it reads /sys;
* files — real inotify on a watched folder (``paths``) and a folder configured as a
  removable medium (``removable_paths``: mounting a real USB stick needs one);
* network — the real socket table (sock_diag), ``include_loopback`` on: real TCP
  connections to listeners on two addresses of 127.0.0.0/8;
* sessions — a utmp file written with real glibc records (``utmp_path``): nobody else
  can log on to this machine;
* inventory — the real dpkg database: real .deb packages installed with dpkg (we are
  root) and purged afterwards;
* web — a real headless Chromium visiting pages served on 127.0.0.1 under *.localhost
  names (Chromium resolves them to loopback), its History read by the collector.

The named lists (blocked_addresses, banned_software, blocked_domains) are filled in
the server's database before the agent starts, and the test waits for the server to
rebuild its rule set from them. Alerts are read from the ``alerts`` table with their
``alert_events``; a near miss is checked once its event is stored, which is the same
transaction in which the rules ran on it, so "no alert" then is final, not a guess.
Each rule owns its event kinds here, so the tests do not disturb one another (the two
software-install rules share a kind and are tested together).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
import sqlalchemy as sa

from sekimori.agent.platform.linux.utmp import USER_PROCESS
from sekimori.clock import now_us
from sekimori.protocol.events.inventory import SoftwareSnapshot
from sekimori.server.store.rule_config import rules_revision_of, save_rule_list
from sekimori.server.store.schema import alert_events, alerts, events
from tests.agent.collectors.test_inventory import _build_deb, _dpkg
from tests.agent.platform.test_browsers import Chromium, Pages
from tests.agent.platform.test_usb import RECEIVER, STICK, add_device, usb_root
from tests.agent.platform.test_utmp import utmp_record
from tests.processes import AgentProcess, ServerProcess, wait_for

pytestmark = pytest.mark.slow

# The machine is shared: waits are generous, they end as soon as the thing happens.
WAIT = 60.0  # a page visit waits for Chromium to save its history
TOKYO = ZoneInfo("Asia/Tokyo")  # the time zone of builtin.logon_outside_working_hours
# Unique to this run: the dpkg database is the real one, shared with other tests.
TAG = uuid.uuid4().hex[:8]
ALLOWED_PACKAGE = f"sekimori-e2e-{TAG}-editor-plus"
BANNED_PACKAGE = f"sekimori-e2e-{TAG}-editor"
# Addresses nothing else on this machine uses (the network collector sees every socket).
LISTED_ADDRESS = "127.83.41.7"
UNLISTED_ADDRESS = "127.83.41.8"


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Alert:
    id: int
    status: str
    count: int
    summary: str
    linked: tuple[StoredEvent, ...]


@dataclass
class Machine:
    """The server, the agent's device id and the test inputs its collectors read."""

    server: ServerProcess
    device_id: str
    sys_root: Path  # the sysfs-like tree (bus/usb/devices)
    home: Path  # watched by the file collector
    usb_drive: Path  # a folder the file collector treats as removable media
    outside: Path  # a folder nobody watches (where copied files come from)
    utmp: Path
    browser_home: Path  # the home whose Chromium history the web collector reads
    debs: dict[str, Path]

    # ---- reading the server's database ----------------------------------------------

    def events(self, kind: str) -> list[StoredEvent]:
        with self.server.engine().connect() as conn:
            rows = conn.execute(
                sa.select(events.c.seq, events.c.kind, events.c.payload)
                .where(events.c.device_id == self.device_id, events.c.kind == kind)
                .order_by(events.c.seq)
            ).all()
        return [StoredEvent(int(r.seq), str(r.kind), json.loads(r.payload)) for r in rows]

    def alerts(self, rule_id: str) -> list[Alert]:
        with self.server.engine().connect() as conn:
            found = conn.execute(
                sa.select(alerts.c.id, alerts.c.status, alerts.c.count, alerts.c.summary)
                .where(alerts.c.device_id == self.device_id, alerts.c.rule_id == rule_id)
                .order_by(alerts.c.id)
            ).all()
            out = []
            for alert_id, status, count, summary in found:
                linked = conn.execute(
                    sa.select(events.c.seq, events.c.kind, events.c.payload)
                    .select_from(
                        alert_events.join(
                            events,
                            sa.and_(
                                events.c.device_id == alert_events.c.device_id,
                                events.c.seq == alert_events.c.seq,
                            ),
                        )
                    )
                    .where(alert_events.c.alert_id == alert_id)
                    .order_by(events.c.seq)
                ).all()
                out.append(
                    Alert(
                        int(alert_id),
                        str(status),
                        int(count),
                        str(summary),
                        tuple(
                            StoredEvent(int(e.seq), str(e.kind), json.loads(e.payload))
                            for e in linked
                        ),
                    )
                )
        return out

    # ---- waiting ---------------------------------------------------------------------

    def wait_event(
        self, kind: str, test: Callable[[dict[str, Any]], bool], what: str
    ) -> StoredEvent:
        """The first stored event of ``kind`` whose payload passes ``test``."""
        found: list[StoredEvent] = []

        def stored() -> bool:
            found[:] = [e for e in self.events(kind) if test(e.payload)]
            return bool(found)

        wait_for(stored, WAIT, what, 0.2)
        return found[0]

    def wait_alert(self, rule_id: str, count: int) -> Alert:
        """The rule's one alert on this device, once its count reaches ``count``;
        fails if the rule raised a second alert."""

        def grown() -> bool:
            found = self.alerts(rule_id)
            assert len(found) <= 1, f"{rule_id} raised {len(found)} alerts: {found}"
            return bool(found) and found[0].count >= count

        wait_for(grown, WAIT, f"an alert of {rule_id} with count {count}", 0.2)
        (alert,) = self.alerts(rule_id)
        assert alert.status == "open"
        return alert

    def assert_silent(self, rule_id: str) -> None:
        assert self.alerts(rule_id) == [], f"{rule_id} fired on a near miss"


# ---- the machine ---------------------------------------------------------------------


def _tokyo_time(hour: int, *, weekdays_only: bool) -> int:
    """The latest past ``hour``:00 in Tokyo (on a weekday if asked), Unix seconds."""
    now = dt.datetime.now(TOKYO)
    day = now.date()
    while True:
        at = dt.datetime.combine(day, dt.time(hour), tzinfo=TOKYO)
        if at < now - dt.timedelta(minutes=5) and (not weekdays_only or at.weekday() < 5):
            return int(at.timestamp())
        day -= dt.timedelta(days=1)


def _logon(line: str, user: str, pid: int, sec: int) -> bytes:
    """A local logon as login(1) writes it into utmp (USER_PROCESS in the line's slot)."""
    return utmp_record(USER_PROCESS, pid=pid, line=line, ut_id=line[-4:], user=user, sec=sec)


def _append(path: Path, record: bytes) -> None:
    with path.open("ab") as f:
        f.write(record)


def _fill_lists(server: ServerProcess) -> int:
    with server.engine().begin() as conn:
        lists = {
            "blocked_addresses": [LISTED_ADDRESS, "198.51.100.0/24"],
            # The allowed package's name starts with a banned one: a list entry is a
            # whole package name, not a prefix.
            "banned_software": [BANNED_PACKAGE, f"sekimori-e2e-{TAG}-scanner"],
            "blocked_domains": ["blocked.localhost"],
        }
        for name, entries in lists.items():
            save_rule_list(conn, name, entries, actor="test", now_us=now_us())
        return rules_revision_of(conn)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    root = tmp_path_factory.mktemp("rules-e2e")
    with ExitStack() as stack:
        server = ServerProcess(root / "server", f"sqlite:///{root / 'store' / 'sekimori.db'}")
        stack.callback(server.dispose)
        server.start()
        revision = _fill_lists(server)
        # The server rebuilds its rule set within about a second of a change: wait for
        # it, so that no event below meets the rules without their lists.
        wait_for(
            lambda: f"rules revision {revision}:" in server.log(),
            WAIT,
            f"the server to load rules revision {revision}",
            0.1,
        )

        sys_root = root / "sys"
        usb_root(sys_root)
        # A stick already plugged in when the agent first looks: present_at_start.
        add_device(sys_root, "1-1", STICK, ["08"], devnum=3)
        home, usb_drive, outside = root / "home", root / "media" / "USBSTICK", root / "outside"
        for folder in (home / "scratch", usb_drive, outside):
            folder.mkdir(parents=True)
        # Files to delete, made before the agent watches (their creation is not an event).
        for n in range(201):
            (home / "scratch" / f"old-{n:03}.log").write_text("x")
        utmp = root / "utmp"
        # A logon at night, open before the agent started: present_at_start, left out.
        _append(utmp, _logon("tty3", "early", 700, _tokyo_time(2, weekdays_only=False)))
        browser_home = root / "webhome" / "alice"
        browser_home.mkdir(parents=True)
        debs = {
            name: _build_deb(root / "debs", name, "1.0")
            for name in (ALLOWED_PACKAGE, BANNED_PACKAGE)
        }
        for name in debs:
            stack.callback(_dpkg, "--purge", name)

        identity = server.enroll(root / "pc")
        agent = AgentProcess(
            root / "pc",
            collectors=("devices", "files", "network", "sessions", "inventory", "web"),
        )
        prefix = "SEKIMORI_AGENT__COLLECTORS__"
        agent.env.update(
            {
                f"{prefix}DEVICES__USB_ROOT": str(sys_root / "bus" / "usb" / "devices"),
                f"{prefix}DEVICES__INTERVAL_SECONDS": "0.2",
                f"{prefix}FILES__PATHS": json.dumps([str(home)]),
                f"{prefix}FILES__REMOVABLE_PATHS": json.dumps([str(usb_drive)]),
                # Only the configured medium: media mounted on this machine are not ours.
                f"{prefix}FILES__WATCH_REMOVABLE": "false",
                f"{prefix}FILES__COALESCE_SECONDS": "0.3",
                f"{prefix}FILES__INTERVAL_SECONDS": "0.2",
                f"{prefix}NETWORK__INCLUDE_LOOPBACK": "true",
                f"{prefix}NETWORK__INCLUDE_UDP": "false",
                f"{prefix}NETWORK__INTERVAL_SECONDS": "1",
                f"{prefix}NETWORK__SAMPLE_SECONDS": "0.2",
                f"{prefix}SESSIONS__UTMP_PATH": str(utmp),
                f"{prefix}SESSIONS__INTERVAL_SECONDS": "0.2",
                f"{prefix}INVENTORY__MANAGERS": json.dumps(["dpkg"]),
                f"{prefix}INVENTORY__INTERVAL_SECONDS": "0.5",
                # The full software list again every few seconds, so that "banned
                # software present" sees a package installed during the test.
                f"{prefix}INVENTORY__FULL_INTERVAL_SECONDS": "4",
                f"{prefix}WEB__HOMES": json.dumps([str(browser_home)]),
                f"{prefix}WEB__BROWSERS": json.dumps(["chromium"]),
                f"{prefix}WEB__INTERVAL_SECONDS": "0.5",
            }
        )
        agent.start()
        stack.callback(lambda: agent.stop() if agent.running() else None)
        yield Machine(
            server=server,
            device_id=identity.device_id,
            sys_root=sys_root,
            home=home,
            usb_drive=usb_drive,
            outside=outside,
            utmp=utmp,
            browser_home=browser_home,
            debs=debs,
        )
        assert agent.stop() == 0, agent.log()[-3000:]


# ---- one test per rule (the two install rules together) --------------------------------


def test_usb_mass_storage_attached(machine: Machine) -> None:
    rule = "builtin.usb_mass_storage_attached"
    # Near misses: the stick present when the agent started, and a USB receiver (HID).
    machine.wait_event(
        "device.usb_attached",
        lambda p: p["port"] == "1-1" and p["present_at_start"],
        "the stick present at start reported",
    )
    add_device(machine.sys_root, "1-3", RECEIVER, ["03"], devnum=4)
    machine.wait_event("device.usb_attached", lambda p: p["port"] == "1-3", "the receiver attached")
    machine.assert_silent(rule)

    # Plugged in (simulated in the sysfs-like tree, see the module docstring).
    add_device(machine.sys_root, "1-2", STICK, ["08"], devnum=9)
    alert = machine.wait_alert(rule, count=1)
    assert alert.count == 1
    ((event),) = alert.linked
    assert event.kind == "device.usb_attached"
    assert (event.payload["port"], event.payload["category"]) == ("1-2", "mass_storage")
    assert not event.payload["present_at_start"]


def test_copying_files_to_removable_media_raises_one_alert(machine: Machine) -> None:
    rule = "builtin.file_copied_to_removable"
    for name in ("budget.xlsx", "customers.csv"):
        (machine.outside / name).write_bytes(os.urandom(2048))
    # Near miss: the same kind of copy into a folder that is not removable media.
    shutil.copy(machine.outside / "budget.xlsx", machine.home / "budget.xlsx")
    machine.wait_event(
        "file.created",
        lambda p: p["path"] == str(machine.home / "budget.xlsx"),
        "the copy into the home folder recorded",
    )
    machine.assert_silent(rule)

    # Two files copied to the stick: one alert, counted twice.
    shutil.copy(machine.outside / "budget.xlsx", machine.usb_drive / "budget.xlsx")
    shutil.copy(machine.outside / "customers.csv", machine.usb_drive / "customers.csv")
    alert = machine.wait_alert(rule, count=2)
    assert alert.count == 2
    assert [(e.kind, e.payload["path"], e.payload["size"]) for e in alert.linked] == [
        ("file.copied_to_removable", str(machine.usb_drive / "budget.xlsx"), 2048),
        ("file.copied_to_removable", str(machine.usb_drive / "customers.csv"), 2048),
    ]
    assert all(e.payload["mount_point"] == str(machine.usb_drive) for e in alert.linked)


def test_mass_file_deletion_fires_on_the_201st_deletion(machine: Machine) -> None:
    rule = "builtin.mass_file_deletion"
    scratch = machine.home / "scratch"
    doomed = sorted(scratch.iterdir())
    assert len(doomed) == 201

    def deleted() -> int:
        return sum(
            1 for e in machine.events("file.deleted") if e.payload["path"].startswith(str(scratch))
        )

    # Near miss: 200 deletions within 5 minutes are not more than 200.
    for path in doomed[:200]:
        path.unlink()
    wait_for(lambda: deleted() == 200, WAIT, "200 deletions recorded", 0.2)
    machine.assert_silent(rule)

    doomed[200].unlink()
    alert = machine.wait_alert(rule, count=201)
    assert alert.count == 201
    assert alert.summary == f"201 events (root, {machine.device_id})"
    ((event),) = alert.linked  # the deletion that crossed the threshold
    assert (event.kind, event.payload["path"]) == ("file.deleted", str(doomed[200]))


def _listener(address: str) -> socket.socket:
    server = socket.socket()
    server.bind((address, 0))
    server.listen()
    return server


def test_outbound_connection_to_a_listed_address(machine: Machine) -> None:
    rule = "builtin.outbound_to_listed_address"

    def to(address: str) -> Callable[[dict[str, Any]], bool]:
        return lambda p: any(c["remote_address"] == address for c in p["connections"])

    with ExitStack() as stack:
        listed = stack.enter_context(_listener(LISTED_ADDRESS))
        listed_port = listed.getsockname()[1]
        unlisted = stack.enter_context(_listener(UNLISTED_ADDRESS))
        # Near miss: the next address of 127.0.0.0/8. Held open until the collector saw it.
        near = stack.enter_context(socket.create_connection(unlisted.getsockname(), timeout=5))
        machine.wait_event("network.connections", to(UNLISTED_ADDRESS), "the unlisted connection")
        machine.assert_silent(rule)
        near.close()

        hit = stack.enter_context(socket.create_connection(listed.getsockname(), timeout=5))
        alert = machine.wait_alert(rule, count=1)
        hit.close()
    assert alert.count == 1
    ((event),) = alert.linked
    (connection,) = [
        c for c in event.payload["connections"] if c["remote_address"] == LISTED_ADDRESS
    ]
    assert connection["pid"] == os.getpid()
    assert connection["remote_port"] == listed_port


def test_logon_outside_working_hours(machine: Machine) -> None:
    rule = "builtin.logon_outside_working_hours"
    machine.wait_event(
        "session.logon",
        lambda p: p["tty"] == "tty3" and p["present_at_start"],
        "the night logon open at start reported",
    )
    # Near miss: a logon at 10:00 on a weekday, Tokyo time.
    inside = _tokyo_time(10, weekdays_only=True)
    _append(machine.utmp, _logon("pts/1", "day", 701, inside))
    machine.wait_event("session.logon", lambda p: p["tty"] == "pts/1", "the day logon")
    machine.assert_silent(rule)

    outside = _tokyo_time(3, weekdays_only=False)
    _append(machine.utmp, _logon("pts/2", "night", 702, outside))
    alert = machine.wait_alert(rule, count=1)
    assert alert.count == 1
    ((event),) = alert.linked
    assert event.kind == "session.logon"
    assert (event.payload["user"], event.payload["login_time_us"]) == ("night", outside * 10**6)


def _package_names(snapshot: dict[str, Any]) -> set[str]:
    """The names in an ``inventory.software`` payload (its packages are arrays)."""
    return {p.name for p in msgspec.convert(snapshot, SoftwareSnapshot).packages}


def test_software_installed_and_banned_software(machine: Machine) -> None:
    installed = "builtin.software_installed"
    banned_installed = "builtin.banned_software_installed"
    banned_present = "builtin.banned_software_present"
    # Near miss for "present": the full list at start holds every package of this
    # machine (hundreds), none of them banned.
    first = machine.wait_event("inventory.software", lambda p: True, "the first full list")
    at_start = _package_names(first.payload)
    assert len(at_start) > 100 and BANNED_PACKAGE not in at_start
    machine.assert_silent(banned_present)

    # Near miss for the banned rules: a package whose name only starts with a banned one.
    # (Other tests on this machine may install packages meanwhile: "new software
    # installed" then counts those too, so it is checked by the events it links.)
    _dpkg("-i", str(machine.debs[ALLOWED_PACKAGE]))
    machine.wait_event(
        "inventory.software_installed",
        lambda p: p["name"] == ALLOWED_PACKAGE,
        "the allowed package's installation",
    )
    alert = machine.wait_alert(installed, count=1)
    assert ALLOWED_PACKAGE in [e.payload["name"] for e in alert.linked]
    machine.assert_silent(banned_installed)
    machine.wait_event(
        "inventory.software",
        lambda p: ALLOWED_PACKAGE in _package_names(p),
        "a full list with the allowed package",
    )
    machine.assert_silent(banned_present)

    _dpkg("-i", str(machine.debs[BANNED_PACKAGE]))
    alert = machine.wait_alert(banned_installed, count=1)
    assert alert.count == 1
    ((event),) = alert.linked
    assert (event.kind, event.payload["name"]) == ("inventory.software_installed", BANNED_PACKAGE)
    # The next full list holds it: "present" fires (and grows with each later list).
    alert = machine.wait_alert(banned_present, count=1)
    assert alert.linked[0].kind == "inventory.software"
    assert BANNED_PACKAGE in _package_names(alert.linked[0].payload)

    # "New software installed": one alert for both installations; the packages that
    # were there when the agent started (its baseline) never count as installed.
    (alert,) = machine.alerts(installed)
    linked = {e.payload["name"] for e in alert.linked}
    assert {ALLOWED_PACKAGE, BANNED_PACKAGE} <= linked
    assert not linked & at_start
    assert alert.count == len(alert.linked)


def test_blocked_domain_access(machine: Machine) -> None:
    rule = "builtin.blocked_domain_access"
    pages = Pages({"near": "Near miss", "hit": "Blocked page", "sub": "Blocked subdomain"})
    data_dir = machine.browser_home / ".config" / "chromium"
    port = pages.server.server_address[1]
    try:
        # Near miss: a host that merely ends with the blocked name, not a subdomain of it.
        browser = Chromium(data_dir, [f"http://notblocked.localhost:{port}/near"])
        try:
            browser.wait_for_title("Near miss")
        finally:
            browser.close()  # Chromium writes the visits it holds when it quits
        machine.wait_event(
            "web.visit", lambda p: p["host"] == "notblocked.localhost", "the near-miss visit"
        )
        machine.assert_silent(rule)

        # The first browser's port file is stale: the helper must wait for the new one.
        (data_dir / "DevToolsActivePort").unlink()
        browser = Chromium(data_dir, [f"http://blocked.localhost:{port}/hit"])
        try:
            browser.wait_for_title("Blocked page")
            browser.open(f"http://www.blocked.localhost:{port}/sub")
            browser.wait_for_title("Blocked subdomain")
        finally:
            browser.close()
    finally:
        pages.close()
    alert = machine.wait_alert(rule, count=2)
    assert alert.count == 2
    assert sorted(e.payload["host"] for e in alert.linked) == [
        "blocked.localhost",
        "www.blocked.localhost",
    ]
    assert all(e.kind == "web.visit" for e in alert.linked)
