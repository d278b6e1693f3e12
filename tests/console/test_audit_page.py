"""The audit trail page: administrators and auditors only; filters, newest first,
pages; viewing and verifying are themselves recorded; tampering shows."""

from __future__ import annotations

import re
from contextlib import closing

import pytest
import sqlalchemy as sa

from sekimori.server.store.audit import append_audit, search_audit
from tests.console.conftest import as_user
from tests.processes import ServerProcess

_ROW = re.compile(r'<tr data-seq="(\d+)" data-action="([^"]+)">(.*?)</tr>', re.S)


def _rows(html: str) -> list[tuple[int, str, str]]:
    return [(int(seq), action, body) for seq, action, body in _ROW.findall(html)]


@pytest.mark.parametrize("name", ["bob", "dave"])
def test_operators_and_viewers_cannot_see_the_trail(
    console_server: ServerProcess, name: str
) -> None:
    with closing(as_user(console_server, name)) as http:
        assert 'href="/audit"' not in http.get("/").text
        assert http.get("/audit").status_code == 403
        assert http.post("/audit/verify", data={"csrf_token": http.csrf}).status_code == 403
    assert not search_audit(console_server.engine(), actor=name, action="audit.view").entries


@pytest.mark.parametrize("name", ["alice", "carol"])
def test_administrators_and_auditors_see_the_trail(
    console_server: ServerProcess, name: str
) -> None:
    with closing(as_user(console_server, name)) as http:
        assert 'href="/audit"' in http.get("/").text
        page = http.get("/audit")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert rows and [seq for seq, _, _ in rows] == sorted((s for s, _, _ in rows), reverse=True)
    # This very login is on the page, with its client address.
    login = next(body for _, action, body in rows if action == "login" and name in body)
    assert "127.0.0.1" in login and "Logged in" in login


def test_viewing_the_trail_is_recorded_with_its_filters(console_server: ServerProcess) -> None:
    with closing(as_user(console_server, "carol")) as http:
        page = http.get("/audit", params={"actor": "bob", "action": "login", "target": "x"})
    assert page.status_code == 200
    entry = search_audit(console_server.engine(), actor="carol", action="audit.view").entries[0]
    assert entry.detail_dict() == {"actor": "bob", "action": "login", "target": "x", "page": 1}
    assert entry.client_ip == "127.0.0.1"


def test_filters_narrow_the_trail(console_server: ServerProcess) -> None:
    engine = console_server.engine()
    append_audit(engine, actor="zed", action="user.create", target="victor", detail={"a": 1})
    append_audit(engine, actor="zed", action="user.disable", target="victor-2")
    append_audit(engine, actor="yuki", action="user.create", target="walter")
    with closing(as_user(console_server, "carol")) as http:
        by_actor = _rows(http.get("/audit", params={"actor": "zed"}).text)
        assert [a for _, a, _ in by_actor] == ["user.disable", "user.create"]
        by_action = _rows(http.get("/audit", params={"action": "user.create"}).text)
        bodies = " ".join(b for _, _, b in by_action)
        assert "victor" in bodies and "walter" in bodies
        assert all(a == "user.create" for _, a, _ in by_action)
        by_target = _rows(http.get("/audit", params={"target": "victor"}).text)
        assert len(by_target) == 2
        assert not _rows(
            http.get("/audit", params={"since": "2001-01-01", "until": "2001-02-01"}).text
        )
        recent = _rows(http.get("/audit", params={"actor": "zed", "since": "1h"}).text)
        assert len(recent) == 2
        bad = http.get("/audit", params={"since": "yesterday"})
        assert bad.status_code == 400 and "is not a time" in bad.text
        # Details: a JSON object shown as key: value.
        assert "a:</span> 1" in by_actor[1][2]


def test_the_trail_is_paged_newest_first(console_server: ServerProcess) -> None:
    engine = console_server.engine()
    for i in range(120):
        append_audit(engine, actor="pager", action="test.page", target=f"t{i:03d}")
    with closing(as_user(console_server, "alice")) as http:
        first = http.get("/audit", params={"actor": "pager"}).text
        third = http.get("/audit", params={"actor": "pager", "page": "3"}).text
    assert "Page 1 of 3" in first and 'rel="next"' in first and "page=2" in first
    assert len(_rows(first)) == 50 and "t119" in _rows(first)[0][2]
    assert len(_rows(third)) == 20 and "t000" in _rows(third)[-1][2]


def test_verify_now_shows_the_chain_and_is_recorded(console_server: ServerProcess) -> None:
    with closing(as_user(console_server, "carol")) as http:
        intact = http.post("/audit/verify", data={"csrf_token": http.csrf})
        assert intact.status_code == 200
        assert 'data-chain="intact"' in intact.text
        entry = search_audit(console_server.engine(), actor="carol", action="audit.verify").entries[
            0
        ]
        assert entry.detail_dict()["intact"] is True
        assert http.post("/audit/verify").status_code == 403  # no CSRF token

        # Someone edits an entry behind Sekimori's back: the page says so.
        engine = console_server.engine()
        victim = append_audit(engine, actor="zed", action="user.create", target="forged")
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE audit_log SET target = 'innocent' WHERE seq = :s"),
                {"s": victim.seq},
            )
        try:
            broken = http.post("/audit/verify", data={"csrf_token": http.csrf})
            assert 'data-chain="broken"' in broken.text
            assert f"entry {victim.seq}: its content was changed" in broken.text
            entry = search_audit(engine, actor="carol", action="audit.verify").entries[0]
            assert entry.detail_dict()["intact"] is False
        finally:
            with engine.begin() as conn:
                conn.execute(
                    sa.text("UPDATE audit_log SET target = 'forged' WHERE seq = :s"),
                    {"s": victim.seq},
                )
        assert (
            'data-chain="intact"' in http.post("/audit/verify", data={"csrf_token": http.csrf}).text
        )


def test_action_labels_are_translated(console_server: ServerProcess) -> None:
    with closing(as_user(console_server, "carol")) as http:
        page = http.get("/audit", params={"action": "login"}, headers={"Accept-Language": "ja"})
    assert "監査ログ" in page.text
    assert '<option value="login" selected>ログイン</option>' in page.text
