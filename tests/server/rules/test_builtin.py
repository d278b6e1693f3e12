"""Each built-in rule fires on realistic events and stays silent on near-misses."""

from __future__ import annotations

import pytest

from sekimori.protocol.events.device import UsbAttached
from sekimori.protocol.events.file import FileCopiedToRemovable, FileCreated, FileDeleted
from sekimori.protocol.events.inventory import Package, SoftwareInstalled, SoftwareSnapshot
from sekimori.protocol.events.network import Connection, NetworkConnections
from sekimori.protocol.events.session import Logon
from sekimori.protocol.events.web import WebVisit
from sekimori.server.rules import BUILTIN_LISTS, RuleSet, UnknownListError, load_builtin_rules
from tests.server.rules.helpers import WORKDAY_US, event, tokyo_us

LISTS = {
    "blocked_domains": ["example-gambling.com", "pastebin.com"],
    "banned_software": ["bittorrent", "teamviewer"],
    "blocked_addresses": ["203.0.113.0/24", "198.51.100.7", "2001:db8:bad::/48"],
}


@pytest.fixture
def rules() -> RuleSet:
    return RuleSet(load_builtin_rules(), LISTS)


def fired(rules: RuleSet, *events: object) -> list[str]:
    ids: list[str] = []
    for e in events:
        ids.extend(m.rule_id for m in rules.evaluate(e))  # type: ignore[arg-type]
    return ids


def usb(category: str, *, present_at_start: bool = False) -> UsbAttached:
    return UsbAttached(
        port="2-1.4",
        bus=2,
        address=7,
        vendor_id="0781",
        product_id="5583",
        interface_classes=["08"] if category == "mass_storage" else ["03"],
        manufacturer="SanDisk",
        product="Ultra Fit",
        serial="4C530001",
        category=category,  # type: ignore[arg-type]
        present_at_start=present_at_start,
    )


def test_the_pack_loads_with_every_rule_enabled_and_needs_the_builtin_lists() -> None:
    rules = load_builtin_rules()
    assert len(rules) == 9
    assert all(r.enabled and r.id.startswith("builtin.") for r in rules)
    needed = {ref.name for r in rules for ref in r.match.list_refs()}
    assert needed == set(BUILTIN_LISTS)
    with pytest.raises(UnknownListError, match="blocked_domains"):
        RuleSet(rules, {"banned_software": [], "blocked_addresses": []})


def test_usb_mass_storage_attached(rules: RuleSet) -> None:
    assert fired(rules, event(usb("mass_storage"))) == ["builtin.usb_mass_storage_attached"]
    # Near-misses: a keyboard; a stick that was already there when the agent started.
    assert fired(rules, event(usb("hid")), event(usb("mass_storage", present_at_start=True))) == []


def test_file_copied_to_removable(rules: RuleSet) -> None:
    copied = FileCopiedToRemovable(
        path="/media/alice/USB/report.xlsx",
        operation="created",
        size=48213,
        owner="alice",
        mount_point="/media/alice/USB",
        device="/dev/sdb1",
    )
    assert fired(rules, event(copied)) == ["builtin.file_copied_to_removable"]
    # The file.created event of the same write is not the signal.
    created = FileCreated(path="/media/alice/USB/report.xlsx", size=48213, removable=True)
    assert fired(rules, event(created)) == []


def test_blocked_domain_access(rules: RuleSet) -> None:
    def visit(host: str) -> WebVisit:
        return WebVisit(
            url=f"https://{host}/x", title="t", host=host, browser="chromium", profile="Default"
        )

    assert fired(rules, event(visit("pastebin.com"))) == ["builtin.blocked_domain_access"]
    assert fired(rules, event(visit("WWW.Example-Gambling.com"))) == [
        "builtin.blocked_domain_access"
    ]
    # Near-misses: an unlisted domain, a listed name as a suffix of another domain.
    assert fired(rules, event(visit("docs.python.org")), event(visit("notpastebin.com"))) == []


def installed(name: str) -> SoftwareInstalled:
    return SoftwareInstalled(
        manager="dpkg",
        name=name,
        architecture="amd64",
        version="1.0",
        source=name,
        source_version="1.0",
    )


def test_new_software_and_banned_software_installed(rules: RuleSet) -> None:
    assert fired(rules, event(installed("htop"))) == ["builtin.software_installed"]
    assert fired(rules, event(installed("teamviewer"))) == [
        "builtin.software_installed",
        "builtin.banned_software_installed",
    ]
    # Near-miss: a name that only contains a banned one.
    assert fired(rules, event(installed("teamviewer-docs"))) == ["builtin.software_installed"]


def test_banned_software_present_in_the_software_list(rules: RuleSet) -> None:
    def snapshot(*names: str) -> SoftwareSnapshot:
        packages = [Package("dpkg", n, "1.0", "amd64", n, "1.0") for n in names]
        return SoftwareSnapshot(packages=packages, managers=["dpkg"], errors=[])

    assert fired(rules, event(snapshot("bash", "bittorrent", "zsh"))) == [
        "builtin.banned_software_present"
    ]
    # Near-miss: a banned name as a version or source of another package is not its name.
    clean = SoftwareSnapshot(
        packages=[Package("dpkg", "bash", "bittorrent", "amd64", "bittorrent", "1")],
        managers=["dpkg"],
        errors=[],
    )
    assert fired(rules, event(snapshot("bash", "zsh")), event(clean)) == []


def logon(when_us: int, *, present_at_start: bool = False) -> object:
    payload = Logon(
        user="alice",
        tty="pts/0",
        host="192.0.2.10",
        address="192.0.2.10",
        remote=True,
        pid=4242,
        login_time_us=when_us,
        present_at_start=present_at_start,
    )
    return event(payload, time_us=when_us)


def test_logon_outside_working_hours(rules: RuleSet) -> None:
    late = tokyo_us(2026, 11, 25, 23, 30)  # Wednesday 23:30
    early = tokyo_us(2026, 11, 25, 7, 59)
    saturday = tokyo_us(2026, 11, 28, 11)
    for when in (late, early, saturday):
        assert fired(rules, logon(when)) == ["builtin.logon_outside_working_hours"]
    # Near-misses: inside hours (the edges included), and a session open at agent start.
    inside = [tokyo_us(2026, 11, 25, 8), WORKDAY_US, tokyo_us(2026, 11, 27, 19, 59)]
    assert fired(rules, *[logon(t) for t in inside]) == []
    assert fired(rules, logon(late, present_at_start=True)) == []


def test_mass_file_deletion_fires_once_above_200_by_one_user(rules: RuleSet) -> None:
    def deleted(n: int, user: str, offset_s: float) -> object:
        payload = FileDeleted(path=f"/home/{user}/docs/{n}.docx")
        return event(payload, os_user=user, time_us=WORKDAY_US + int(offset_s * 1e6))

    # 200 deletions in a minute: not more than 200.
    assert fired(rules, *[deleted(n, "alice", n * 0.3) for n in range(200)]) == []
    # The 201st within 5 minutes fires, once; the following ones do not.
    assert fired(rules, deleted(200, "alice", 61)) == ["builtin.mass_file_deletion"]
    assert fired(rules, *[deleted(n, "alice", 62 + n * 0.1) for n in range(300)]) == []


def test_mass_file_deletion_near_misses() -> None:
    rules = RuleSet(load_builtin_rules(), LISTS)
    # Two users, 150 each, in the same minutes; and 300 spread over 10 minutes (too slow).
    events = []
    for n in range(150):
        for user in ("alice", "bob"):
            payload = FileDeleted(path=f"/home/{user}/{n}")
            events.append(event(payload, os_user=user, time_us=WORKDAY_US + n * 100_000))
    assert fired(rules, *events) == []
    slow = [
        event(FileDeleted(path=f"/srv/{n}"), os_user="carol", time_us=WORKDAY_US + n * 2_000_000)
        for n in range(300)
    ]
    assert fired(rules, *slow) == []


def connections(*addresses: str) -> NetworkConnections:
    entries = [
        Connection(
            pid=3120,
            exe="/usr/bin/curl",
            user="alice",
            protocol="tcp",
            remote_address=address,
            remote_port=443,
            local_ports=[51514],
            count=1,
            first_seen_us=WORKDAY_US,
            last_seen_us=WORKDAY_US,
        )
        for address in addresses
    ]
    return NetworkConnections(
        period_start_us=WORKDAY_US - 60_000_000, period_end_us=WORKDAY_US, connections=entries
    )


def test_outbound_connection_to_a_listed_address(rules: RuleSet) -> None:
    for listed in ("203.0.113.25", "198.51.100.7", "2001:db8:bad::1", "::ffff:203.0.113.9"):
        assert fired(rules, event(connections("93.184.215.14", listed))) == [
            "builtin.outbound_to_listed_address"
        ]
    # Near-misses: neighbours of the listed ones, an empty summary.
    near = event(connections("198.51.100.8", "203.0.114.1", "2001:db8:bae::1"))
    assert fired(rules, near, event(connections())) == []
