"""Screens (issue 6) end to end: frames sent as events over a real agent connection
to a real server process are stored encrypted, shown in the console's timeline
player to administrators only (scope applies), every frame view is audited, and a
tampered blob gives an error, never a picture."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.store.schema import audit_log
from sekimori.server.store.users import create_user
from tests.console.alert_seed import alert_ids, copied_to_usb, ingest
from tests.console.conftest import PASSWORD, ConsoleClient, as_user
from tests.console.seed import add_device
from tests.processes import ServerProcess
from tests.screen_frames import FrameEvent, picture, screen_frame, send_frames

SECOND = 1_000_000


@dataclass
class Seeded:
    sales: str  # device ids
    hr: str
    pictures: list[bytes]  # the sales device's frames, in order
    times: list[int]
    hr_picture: bytes


@pytest.fixture(scope="module")
def seeded(console_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    base: Path = tmp_path_factory.mktemp("screens-pcs")
    sales = console_server.enroll(base / "sales", group="sales")
    hr = console_server.enroll(base / "hr", group="hr")
    start = now_us() - 600 * SECOND
    pictures = [picture(f"sales frame {i}") for i in range(3)]
    times = [start + i * 60 * SECOND for i in range(3)]
    events = [
        FrameEvent(i + 1, times[i], "taro", screen_frame(p, title=f"Window {i}"))
        for i, p in enumerate(pictures)
    ]
    # A frame whose digest does not match its picture: quarantined, not stored.
    bad = picture("forged")
    events.append(
        FrameEvent(4, start, "taro", screen_frame(bad, sha256=hashlib.sha256(b"x").hexdigest()))
    )
    ack = send_frames(console_server, sales, events)
    assert ack.through_seq == 4
    assert [r.seq for r in ack.rejected] == [4]
    assert "sha256" in ack.rejected[0].reason
    hr_picture = picture("hr frame", fmt="jpeg")
    ack = send_frames(
        console_server, hr, [FrameEvent(1, start, "taro", screen_frame(hr_picture, fmt="jpeg"))]
    )
    assert ack.rejected == []
    create_user(
        console_server.engine(),
        "frank",
        PASSWORD,
        "administrator",
        groups_=["hr"],
        all_groups=False,
    )
    return Seeded(sales.device_id, hr.device_id, pictures, times, hr_picture)


@contextlib.contextmanager
def logged_in(server: ServerProcess, name: str) -> Iterator[ConsoleClient]:
    http = as_user(server, name)
    try:
        yield http
    finally:
        http.close()


@pytest.fixture
def alice(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with logged_in(console_server, "alice") as http:
        yield http


def _views(server: ServerProcess, actor: str) -> list[dict[str, object]]:
    with server.engine().connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.target, audit_log.c.detail).where(
                audit_log.c.actor == actor, audit_log.c.action == "screen.view"
            )
        ).all()
    return [{"target": r.target, **json.loads(r.detail)} for r in rows]


def test_frames_are_stored_encrypted_without_the_picture_in_events(
    console_server: ServerProcess, seeded: Seeded
) -> None:
    server = console_server
    assert (
        server.scalar("SELECT count(*) FROM screen_frames WHERE device_id = :d", d=seeded.sales)
        == 3
    )
    assert (
        server.scalar("SELECT count(*) FROM quarantine WHERE device_id = :d", d=seeded.sales) == 1
    )
    with server.engine().connect() as conn:
        payloads = (
            conn.execute(
                sa.text(
                    "SELECT payload FROM events WHERE kind = 'screen.frame' AND device_id = :d"
                ),
                {"d": seeded.sales},
            )
            .scalars()
            .all()
        )
    assert len(payloads) == 3
    for payload in payloads:
        assert '"image":""' in payload
    for p in seeded.pictures:
        digest = hashlib.sha256(p).hexdigest()
        blob = server.data_dir / "blobs" / digest[:2] / digest[2:4] / digest
        raw = blob.read_bytes()
        assert raw.startswith(b"SKB1")
        # Neither the PNG signature nor any 32-byte run of the picture is in the file.
        assert b"\x89PNG" not in raw
        assert all(p[i : i + 32] not in raw for i in range(0, len(p) - 32, 97))
    keys = list((server.data_dir / "pki" / "blob-keys").glob("*.key"))
    assert len(keys) == 1
    assert keys[0].stat().st_mode & 0o077 == 0


def test_administrator_plays_the_timeline_and_each_frame_view_is_audited(
    console_server: ServerProcess, seeded: Seeded, alice: ConsoleClient
) -> None:
    # At the second frame's time (plus a few seconds): the player starts there.
    page = alice.get(
        f"/devices/{seeded.sales}/screens", params={"at": seeded.times[1] + 5 * SECOND}
    )
    assert page.status_code == 200
    assert 'data-current="1"' in page.text
    rows = re.findall(r'<tr data-frame="(\d+)" data-seq="(\d+)"', page.text)
    assert rows == [("0", "1"), ("1", "2"), ("2", "3")]
    assert "Window 1" in page.text
    assert '<script src="/static/screens.js"' in page.text
    before = len(_views(console_server, "alice"))
    for seq, expected in enumerate(seeded.pictures, start=1):
        image = alice.get(f"/screens/frames/{seeded.sales}/{seq}.png")
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert image.headers["cache-control"] == "no-store"
        assert image.content == expected
    views = _views(console_server, "alice")[before:]
    assert [(v["target"], v["seq"]) for v in views] == [(seeded.sales, s) for s in (1, 2, 3)]
    assert views[1]["time_us"] == seeded.times[1]
    # The wrong extension or an unknown frame: 404.
    assert alice.get(f"/screens/frames/{seeded.sales}/1.jpg").status_code == 404
    assert alice.get(f"/screens/frames/{seeded.sales}/99.png").status_code == 404
    assert alice.get(f"/screens/frames/{seeded.sales}/..%2F1.png").status_code == 404
    # Opening the player is audited too (whose timeline, which period).
    with console_server.engine().connect() as conn:
        timeline = conn.execute(
            sa.select(sa.func.count()).where(
                audit_log.c.actor == "alice",
                audit_log.c.action == "screen.timeline",
                audit_log.c.target == seeded.sales,
            )
        ).scalar_one()
    assert timeline >= 1


def test_person_timeline_spans_devices(seeded: Seeded, alice: ConsoleClient) -> None:
    page = alice.get("/screens", params={"user": "taro"})
    assert page.status_code == 200
    devices = re.findall(r'<tr data-frame="\d+" data-seq="\d+" data-device-id="([^"]+)"', page.text)
    assert sorted(set(devices)) == sorted({seeded.sales, seeded.hr})
    assert len(devices) == 4
    jpeg = alice.get(f"/screens/frames/{seeded.hr}/1.jpg")
    assert jpeg.status_code == 200 and jpeg.content == seeded.hr_picture
    assert alice.get("/screens", params={"user": "nobody"}).status_code == 200


def test_jump_to_links_from_logs_and_the_device_page(seeded: Seeded, alice: ConsoleClient) -> None:
    logs = alice.get("/logs", params={"kind": "screen.frame", "device": seeded.sales})
    assert logs.status_code == 200
    links = re.findall(rf'href="/devices/{seeded.sales}/screens\?at=(\d+)"', logs.text)
    assert sorted(int(t) for t in links) == seeded.times
    device = alice.get(f"/devices/{seeded.sales}")
    assert f'href="/devices/{seeded.sales}/screens"' in device.text
    activity = alice.get(f"/devices/{seeded.sales}", params={"tab": "activity"})
    assert activity.status_code == 200
    assert 'data-kind="screen.frame"' in activity.text
    assert 'href="/screens"' in device.text  # the menu


@pytest.mark.parametrize("name", ["bob", "carol", "dave"])
def test_other_roles_are_refused_by_url_and_menu(
    console_server: ServerProcess, seeded: Seeded, name: str
) -> None:
    with logged_in(console_server, name) as http:
        for url in (
            f"/devices/{seeded.sales}/screens",
            "/screens?user=taro",
            f"/screens/frames/{seeded.sales}/1.png",
        ):
            response = http.get(url)
            assert response.status_code == 403, (name, url)
            assert b"\x89PNG" not in response.content
        home = http.get("/")
        assert 'href="/screens"' not in home.text
        device = http.get(f"/devices/{seeded.sales}")
        assert "/screens" not in device.text
        logs = http.get("/logs", params={"kind": "screen.frame"})
        assert "/screens?at=" not in logs.text
    assert _views(console_server, name) == []


def test_group_limited_administrator_sees_only_their_groups(
    console_server: ServerProcess, seeded: Seeded
) -> None:
    with logged_in(console_server, "frank") as http:
        assert http.get(f"/devices/{seeded.sales}/screens").status_code == 404
        assert http.get(f"/screens/frames/{seeded.sales}/1.png").status_code == 404
        assert http.get(f"/devices/{seeded.hr}/screens").status_code == 200
        page = http.get("/screens", params={"user": "taro"})
        devices = set(re.findall(r'data-device-id="([^"]+)"', page.text))
        assert devices == {seeded.hr}
    assert [v["target"] for v in _views(console_server, "frank")] == []


def test_a_tampered_blob_gives_an_error_not_a_picture(
    console_server: ServerProcess, seeded: Seeded, alice: ConsoleClient
) -> None:
    digest = hashlib.sha256(seeded.pictures[2]).hexdigest()
    blob = console_server.data_dir / "blobs" / digest[:2] / digest[2:4] / digest
    raw = bytearray(blob.read_bytes())
    raw[-5] ^= 0x01
    blob.write_bytes(bytes(raw))
    response = alice.get(f"/screens/frames/{seeded.sales}/3.png")
    assert response.status_code == 500
    assert "integrity check" in response.text
    assert response.headers["content-type"].startswith("text/plain")
    with console_server.engine().connect() as conn:
        failed = conn.execute(
            sa.select(sa.func.count()).where(
                audit_log.c.actor == "alice", audit_log.c.action == "screen.view_failed"
            )
        ).scalar_one()
    assert failed == 1
    # The other frames still decrypt.
    assert alice.get(f"/screens/frames/{seeded.sales}/1.png").content == seeded.pictures[0]


def test_key_rotation_by_command_keeps_every_frame_viewable(
    console_server: ServerProcess, seeded: Seeded, alice: ConsoleClient, tmp_path: Path
) -> None:
    keydir = console_server.data_dir / "pki" / "blob-keys"
    [first_key] = [p.stem for p in keydir.glob("*.key")]
    rotated = console_server.cli("screens", "rotate-key")
    assert rotated.returncode == 0, rotated.stderr
    [new_key] = [p.stem for p in keydir.glob("*.key") if p.stem != first_key]
    # The running server encrypts the next frame with the new key.
    identity = console_server.enroll(tmp_path / "after", group="sales")
    fresh = picture("after rotation")
    ack = send_frames(
        console_server, identity, [FrameEvent(1, now_us(), "taro", screen_frame(fresh))]
    )
    assert ack.rejected == []
    digest = hashlib.sha256(fresh).hexdigest()
    blob = console_server.data_dir / "blobs" / digest[:2] / digest[2:4] / digest
    assert new_key.encode() in blob.read_bytes()[:64]
    assert alice.get(f"/screens/frames/{identity.device_id}/1.png").content == fresh
    assert alice.get(f"/screens/frames/{seeded.sales}/1.png").content == seeded.pictures[0]
    # Re-encryption stops short of retiring keys while a blob fails (the tampered one).
    refused = console_server.cli("screens", "rotate-key", "--reencrypt")
    assert refused.returncode != 0
    assert "could not be decrypted" in refused.stderr
    assert first_key in {p.stem for p in keydir.glob("*.key")}
    tampered = hashlib.sha256(seeded.pictures[2]).hexdigest()
    (console_server.data_dir / "blobs" / tampered[:2] / tampered[2:4] / tampered).unlink()
    done = console_server.cli("screens", "rotate-key", "--reencrypt")
    assert done.returncode == 0, done.stderr
    assert "retired" in done.stdout
    [last_key] = [p.stem for p in keydir.glob("*.key")]
    assert last_key not in (first_key, new_key)
    for seq, expected in ((1, seeded.pictures[0]), (2, seeded.pictures[1])):
        assert alice.get(f"/screens/frames/{seeded.sales}/{seq}.png").content == expected
    assert alice.get(f"/screens/frames/{seeded.sales}/3.png").status_code == 404
    with console_server.engine().connect() as conn:
        actions = conn.execute(
            sa.select(audit_log.c.action).where(audit_log.c.action == "screens.rotate_key")
        ).all()
    assert len(actions) == 3


def test_jump_to_from_an_alert_page(console_server: ServerProcess, seeded: Seeded) -> None:
    engine = console_server.engine()
    device_id = add_device(engine, f"screens-{uuid.uuid4().hex[:8]}", group="sales")
    at = now_us() - 30 * SECOND
    ingest(engine, device_id, [copied_to_usb("/media/usb/plan.xlsx", time_us=at)])
    [alert_id] = alert_ids(engine, device_id)
    with logged_in(console_server, "alice") as http:
        page = http.get(f"/alerts/{alert_id}")
        link = re.search(r'id="alert-screen-at" href="([^"]+)"', page.text)
        assert link is not None
        assert link.group(1) == f"/devices/{device_id}/screens?at={at}"
        assert http.get(link.group(1)).status_code == 200
    with logged_in(console_server, "bob") as http:
        page = http.get(f"/alerts/{alert_id}")
        assert page.status_code == 200
        assert "alert-screen-at" not in page.text
