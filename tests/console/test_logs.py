"""The log search and its exports against a real server: each filter, text search,
group scope (bob sees sales, never hr), permissions by URL and by menu, CSV/JSON
exports (formula injection neutralised), audit entries, and bad input as 400."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from sekimori.clock import now_us
from sekimori.protocol.events import EVENT_KINDS
from sekimori.server.store.audit import search_audit
from tests.console.activity_seed import every_kind, removable_copy, visit
from tests.console.conftest import ConsoleClient, as_user
from tests.console.seed import add_device, add_events
from tests.processes import ServerProcess

HOUR = 3_600_000_000


@contextmanager
def logged_in(server: ServerProcess, name: str) -> Iterator[ConsoleClient]:
    http = as_user(server, name)
    try:
        yield http
    finally:
        http.close()


ROW = re.compile(r'<tr data-seq="(\d+)" data-device-id="([^"]+)" data-kind="([^"]+)">')


@dataclass(frozen=True)
class Fleet:
    sales1: str
    sales2: str
    hr: str


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> Fleet:
    engine = console_server.engine()
    now = now_us()
    ids = Fleet(
        sales1=add_device(engine, "sales-01", group="sales"),
        sales2=add_device(engine, "sales-02", group="sales"),
        hr=add_device(engine, "hr-01", group="hr"),
    )
    add_events(engine, ids.sales1, every_kind("taro", now - 3 * HOUR))
    add_events(engine, ids.sales2, every_kind("hanako", now - 2 * HOUR))
    add_events(
        engine,
        ids.sales2,
        [
            visit("https://evil.example/x", '=HYPERLINK("http://x")', "hanako", now - HOUR),
            visit("https://old.example/", "two days ago", "hanako", now - 48 * HOUR),
        ],
    )
    add_events(engine, ids.hr, every_kind("jiro", now - HOUR))
    add_events(
        engine, ids.hr, [removable_copy("/media/jiro/X/hr-secret-給与.pdf", 4096, "jiro", now)]
    )
    return ids


@pytest.fixture(scope="module")
def alice(console_server: ServerProcess, fleet: Fleet) -> Iterator[ConsoleClient]:
    with logged_in(console_server, "alice") as http:
        yield http


@pytest.fixture(scope="module")
def bob(console_server: ServerProcess, fleet: Fleet) -> Iterator[ConsoleClient]:
    with logged_in(console_server, "bob") as http:
        yield http


def rows(http: ConsoleClient, **params: str) -> list[tuple[str, str]]:
    """(device id, kind) of every result row, through every page."""
    found: list[tuple[str, str]] = []
    for page in range(1, 50):
        response = http.get("/logs", params={**params, "page": str(page)})
        assert response.status_code == 200, response.text
        page_rows = [(device, kind) for _seq, device, kind in ROW.findall(response.text)]
        found += page_rows
        if 'rel="next"' not in response.text:
            return found
    raise AssertionError("too many pages")


def test_everything_of_the_last_day_newest_first(alice: ConsoleClient, fleet: Fleet) -> None:
    found = rows(alice)
    kinds = len(EVENT_KINDS)
    assert len(found) == 3 * kinds + 2  # the two-day-old visit is outside the default 24 h
    assert found[0] == (fleet.hr, "file.copied_to_removable")
    page = alice.get("/logs")
    assert f'<a href="/devices/{fleet.hr}">hr-01</a>' in page.text
    assert "Copied to removable media" in page.text
    assert "hr-secret-給与.pdf" in page.text  # the one-line summary
    assert re.search(rf"Matching events: {3 * kinds + 2}\s*<", page.text)
    assert page.headers["server-timing"].startswith("app;dur=")


def test_each_filter(alice: ConsoleClient, fleet: Fleet) -> None:
    kinds = len(EVENT_KINDS)
    assert {d for d, _ in rows(alice, device="sales-01")} == {fleet.sales1}
    assert len(rows(alice, device=fleet.hr)) == kinds + 1
    assert {d for d, _ in rows(alice, group="sales")} == {fleet.sales1, fleet.sales2}
    by_user = rows(alice, user="taro")
    assert {d for d, _ in by_user} == {fleet.sales1} and len(by_user) == kinds
    web = rows(alice, kind="web.visit")
    assert sorted(web) == sorted(
        [(d, "web.visit") for d in (fleet.sales1, fleet.sales2, fleet.sales2, fleet.hr)]
    )
    domain = rows(alice, kind="session.", device="hr-01")
    assert sorted(k for _, k in domain) == sorted(
        k for k in EVENT_KINDS if k.startswith("session.")
    )
    assert len(rows(alice, since="72h", kind="web.visit")) == 5
    assert rows(alice, since="72h", until="30h", kind="web.visit") == [(fleet.sales2, "web.visit")]
    assert rows(alice, device="no-such-pc") == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("INTRANET.example.co.jp/wiki", "web.visit"),
        ("社内ポータル", "window.focus"),
        ("見積書.xlsx", "file.created"),
        ("soffice --calc", "process.started"),
    ],
)
def test_text_search(alice: ConsoleClient, fleet: Fleet, text: str, kind: str) -> None:
    found = rows(alice, q=text, device="sales-01")
    assert (fleet.sales1, kind) in found
    assert all(d == fleet.sales1 for d, _ in found)


def test_paging_and_the_htmx_partial(alice: ConsoleClient, fleet: Fleet) -> None:
    first = alice.get("/logs")
    second = alice.get("/logs", params={"page": "2"})
    one = {(d, s) for s, d, _ in ROW.findall(first.text)}
    two = {(d, s) for s, d, _ in ROW.findall(second.text)}
    assert len(one) == 50 and two and not one & two
    partial = alice.get(
        "/logs",
        params={"kind": "web.visit"},
        headers={"HX-Request": "true", "HX-Target": "logs-results"},
    )
    assert partial.status_code == 200
    assert "<html" not in partial.text and "<form" not in partial.text
    assert len(ROW.findall(partial.text)) == 4


def test_bob_never_sees_the_hr_group(bob: ConsoleClient, fleet: Fleet) -> None:
    everything = rows(bob, since="7d")
    assert everything and {d for d, _ in everything} == {fleet.sales1, fleet.sales2}
    assert rows(bob, device="hr-01") == []
    assert rows(bob, device=fleet.hr) == []
    assert rows(bob, group="hr") == []
    assert rows(bob, q="hr-secret") == []
    page = bob.get("/logs")
    assert "hr-01" not in page.text and '<option value="hr"' not in page.text
    exported = bob.get("/logs/export.csv", params={"since": "7d"})
    assert exported.status_code == 200
    assert fleet.hr not in exported.text and "hr-secret" not in exported.text
    assert fleet.sales1 in exported.text
    exported_json = bob.get("/logs/export.json", params={"since": "7d", "q": "hr-secret"}).json()
    assert exported_json["events"] == []


def test_csv_export_columns_rows_and_formula_injection(alice: ConsoleClient, fleet: Fleet) -> None:
    response = alice.get("/logs/export.csv", params={"kind": "web.visit"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert list(table[0]) == [
        "time",
        "time_us",
        "device_id",
        "hostname",
        "seq",
        "os_user",
        "kind",
        "tag",
        "subject",
        "payload",
    ]
    assert len(table) == 4 and {r["kind"] for r in table} == {"web.visit"}
    assert {r["hostname"] for r in table} == {"sales-01", "sales-02", "hr-01"}
    evil = next(r for r in table if r["tag"] == "evil.example")
    assert evil["subject"].startswith("https://evil.example/x =HYPERLINK")
    # No cell may start with a formula character.
    for row in table:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), value
    injected = alice.get("/logs/export.csv", params={"user": "hanako", "q": "HYPERLINK"})
    cells = list(csv.reader(io.StringIO(injected.text.lstrip("\ufeff"))))
    assert len(cells) == 2
    times = [int(r["time_us"]) for r in table]
    assert times == sorted(times, reverse=True)


def test_json_export(alice: ConsoleClient, fleet: Fleet) -> None:
    response = alice.get("/logs/export.json", params={"device": "sales-01", "kind": "file."})
    assert response.status_code == 200
    body = json.loads(response.text)
    assert body["truncated"] is False and body["limit"] == 100_000
    assert body["filters"]["device"] == "sales-01"
    kinds = sorted(e["kind"] for e in body["events"])
    assert kinds == sorted(k for k in EVENT_KINDS if k.startswith("file."))
    copy = next(e for e in body["events"] if e["kind"] == "file.copied_to_removable")
    assert copy["payload"]["path"] == "/media/stick/顧客リスト.csv"
    assert copy["hostname"] == "sales-01" and copy["os_user"] == "taro"


def test_searches_and_exports_are_audited(console_server: ServerProcess, fleet: Fleet) -> None:
    with logged_in(console_server, "carol") as carol:  # an auditor may search logs
        assert carol.get("/logs", params={"user": "taro", "q": "wiki"}).status_code == 200
        assert carol.get("/logs/export.csv", params={"kind": "web.visit"}).status_code == 200
        assert carol.get("/logs/export.json", params={"group": "hr"}).status_code == 200
    engine = console_server.engine()
    search = search_audit(engine, actor="carol", action="activity.search").entries
    assert search and search[0].detail_dict()["filters"]["user"] == "taro"
    assert search[0].detail_dict()["filters"]["q"] == "wiki"
    exports = search_audit(engine, actor="carol", action="activity.export").entries
    assert [e.detail_dict()["format"] for e in exports] == ["json", "csv"]
    assert exports[0].detail_dict()["filters"]["group"] == "hr"


def test_viewer_gets_403_and_no_menu_links(console_server: ServerProcess) -> None:
    with logged_in(console_server, "dave") as dave:
        for url in ("/logs", "/logs/export.csv", "/logs/export.json"):
            assert dave.get(url).status_code == 403, url
        home = dave.get("/")
        assert 'href="/logs"' not in home.text
    with logged_in(console_server, "erin") as erin:
        assert 'href="/logs"' in erin.get("/").text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "2024-05-01T10:00", "until": "2024-04-01T10:00"}, "must be after its start"),
        ({"since": "yesterday"}, "is not a time"),
        ({"since": "2024-13-45T10:00"}, "is not a time"),
        ({"until": "9999w"}, "out of range"),
        ({"kind": "web.nope"}, "not a known event kind"),
        ({"page": "100000000000"}, "not a page number"),
        ({"page": "5000"}, "narrow the search"),
        ({"page": "-1"}, "not a page number"),
        ({"q": "x" * 500}, "at most 200 characters"),
        ({"since": "2000d"}, "at most 366 days"),
        ({"user": "a\x00b"}, "control characters"),
    ],
)
def test_bad_filters_are_400_with_a_message(
    alice: ConsoleClient, params: dict[str, str], message: str
) -> None:
    page = alice.get("/logs", params=params)
    assert page.status_code == 400
    assert message in page.text
    assert '<form class="filters"' in page.text  # the form stays, to fix the input
    partial = alice.get(
        "/logs", params=params, headers={"HX-Request": "true", "HX-Target": "logs-results"}
    )
    assert partial.status_code == 400 and message in partial.text
    export = alice.get("/logs/export.csv", params=params)
    if "page" not in params:
        assert export.status_code == 400 and message in export.text


def test_japanese_labels(console_server: ServerProcess, fleet: Fleet) -> None:
    with logged_in(console_server, "alice") as http:
        page = http.get("/logs", params={"kind": "web.visit"}, headers={"Accept-Language": "ja"})
    assert page.status_code == 200
    assert "該当イベント: 4 件" in page.text and "Web アクセス" in page.text
    with logged_in(console_server, "alice") as http:
        bad = http.get("/logs", params={"kind": "zzz"}, headers={"Accept-Language": "ja"})
    assert bad.status_code == 400 and "既知のイベント種別ではありません" in bad.text
