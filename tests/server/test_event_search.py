"""The log search in the store, on SQLite and PostgreSQL: each filter, the scope, the
bounded count, text search with LIKE wildcards, and the streamed export."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sekimori.protocol.events import EVENT_KINDS
from sekimori.server.store.event_search import EventCriteria, iter_events, search_events
from sekimori.server.store.schema import groups
from sekimori.server.store.scope import EVERYTHING, Scope
from tests.console.activity_seed import every_kind, visit
from tests.console.seed import add_device, add_events

T0 = 1_720_000_000_000_000  # 2024-07-03 09:46:40 UTC
HOUR = 3_600_000_000


@pytest.fixture
def fleet(engine: sa.Engine) -> dict[str, str]:
    """Two sales PCs and an hr PC, each with one event of every kind."""
    ids = {
        "sales-01": add_device(engine, "sales-01", group="sales"),
        "sales-02": add_device(engine, "SALES-02", group="sales"),
        "hr-01": add_device(engine, "hr-01", group="hr"),
    }
    add_events(engine, ids["sales-01"], every_kind("taro", T0))
    add_events(engine, ids["sales-02"], every_kind("hanako", T0 + HOUR))
    add_events(engine, ids["hr-01"], every_kind("jiro", T0 + 2 * HOUR))
    return ids


def _scope(engine: sa.Engine, *names: str) -> Scope:
    with engine.connect() as conn:
        found = conn.execute(sa.select(groups.c.id).where(groups.c.name.in_(names))).scalars()
        return Scope(all_groups=False, group_ids=frozenset(found))


def _all(engine: sa.Engine, scope: Scope, **criteria: object) -> list[tuple[str, str]]:
    wanted = EventCriteria(since_us=T0 - HOUR, until_us=T0 + 10 * HOUR, **criteria)  # type: ignore[arg-type]
    page = search_events(engine, scope, wanted, limit=1000)
    return [(e.hostname, e.kind) for e in page.events]


def test_everything_newest_first_with_hostnames(engine: sa.Engine, fleet: dict[str, str]) -> None:
    criteria = EventCriteria(since_us=T0 - HOUR, until_us=T0 + 10 * HOUR)
    page = search_events(engine, EVERYTHING, criteria, limit=1000)
    kinds = len(EVENT_KINDS)
    assert page.total == 3 * kinds and not page.total_capped
    times = [e.time_us for e in page.events]
    assert times == sorted(times, reverse=True)
    assert page.events[0].hostname == "hr-01"
    assert page.events[-1].hostname == "sales-01"


def test_each_filter_returns_exactly_the_matching_events(
    engine: sa.Engine, fleet: dict[str, str]
) -> None:
    kinds = len(EVENT_KINDS)
    by_host = _all(engine, EVERYTHING, device="sales-02")  # stored as "SALES-02"
    assert {h for h, _ in by_host} == {"SALES-02"} and len(by_host) == kinds
    by_id = _all(engine, EVERYTHING, device=fleet["hr-01"])
    assert {h for h, _ in by_id} == {"hr-01"} and len(by_id) == kinds
    by_group = _all(engine, EVERYTHING, group="sales")
    assert {h for h, _ in by_group} == {"sales-01", "SALES-02"}
    by_user = _all(engine, EVERYTHING, user="hanako")
    assert {h for h, _ in by_user} == {"SALES-02"} and len(by_user) == kinds
    by_kind = _all(engine, EVERYTHING, kinds=("web.visit",))
    assert sorted(by_kind) == [
        ("SALES-02", "web.visit"),
        ("hr-01", "web.visit"),
        ("sales-01", "web.visit"),
    ]
    file_kinds = _all(engine, EVERYTHING, kinds=("file.created", "file.deleted"), user="taro")
    assert sorted(k for _, k in file_kinds) == ["file.created", "file.deleted"]
    assert _all(engine, EVERYTHING, device="no-such-pc") == []
    assert _all(engine, EVERYTHING, group="no-such-group") == []
    # The time range is [since, until): sales-01's events lie in the first hour only.
    first_hour = search_events(
        engine, EVERYTHING, EventCriteria(since_us=T0, until_us=T0 + HOUR), limit=1000
    )
    assert {e.hostname for e in first_hour.events} == {"sales-01"}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("intranet.example.co.jp/wiki", "web.visit"),  # URL
        ("社内wiki", "web.visit"),  # page title
        ("社内ポータル", "window.focus"),  # window title
        ("顧客リスト.csv", "file.copied_to_removable"),  # path
        ("--CALC", "process.started"),  # command line, any case
    ],
)
def test_text_search_finds_urls_titles_paths_and_command_lines(
    engine: sa.Engine, fleet: dict[str, str], text: str, kind: str
) -> None:
    found = _all(engine, EVERYTHING, text=text, device="sales-01")
    assert kind in {k for _, k in found}, found


def test_like_wildcards_in_the_text_are_literal(engine: sa.Engine) -> None:
    pc = add_device(engine, "pc", group="sales")
    add_events(
        engine,
        pc,
        [
            visit("https://a.example/100%_off", "sale", "taro", T0),
            visit("https://a.example/100x-off", "sale", "taro", T0 + 1),
        ],
    )
    found = search_events(
        engine,
        EVERYTHING,
        EventCriteria(since_us=T0 - 1, until_us=T0 + 10, text="100%_"),
    )
    assert [e.subject for e in found.events] == ["https://a.example/100%_off sale"]


def test_a_group_limited_scope_never_sees_other_groups(
    engine: sa.Engine, fleet: dict[str, str]
) -> None:
    sales = _scope(engine, "sales")
    seen = _all(engine, sales)
    assert {h for h, _ in seen} == {"sales-01", "SALES-02"}
    # Asking for the hr PC by name, id or group gives nothing, not an error.
    assert _all(engine, sales, device="hr-01") == []
    assert _all(engine, sales, device=fleet["hr-01"]) == []
    assert _all(engine, sales, group="hr") == []
    assert _all(engine, sales, user="jiro") == []
    assert _all(engine, Scope(all_groups=False)) == []
    exported = iter_events(
        engine, sales, EventCriteria(since_us=T0 - HOUR, until_us=T0 + 10 * HOUR), limit=10_000
    )
    assert {e.hostname for e in exported} == {"sales-01", "SALES-02"}


def test_the_count_stops_at_its_cap_and_pages_are_offsets(
    engine: sa.Engine, fleet: dict[str, str]
) -> None:
    criteria = EventCriteria(since_us=T0 - HOUR, until_us=T0 + 10 * HOUR)
    capped = search_events(engine, EVERYTHING, criteria, limit=10, count_cap=25)
    assert capped.total == 25 and capped.total_capped
    first = search_events(engine, EVERYTHING, criteria, limit=10)
    second = search_events(engine, EVERYTHING, criteria, offset=10, limit=10)
    keys = {(e.device_id, e.seq) for e in first.events}
    assert len(keys) == 10 and not keys & {(e.device_id, e.seq) for e in second.events}


def test_export_streams_in_chunks_up_to_its_limit(engine: sa.Engine, fleet: dict[str, str]) -> None:
    criteria = EventCriteria(since_us=T0 - HOUR, until_us=T0 + 10 * HOUR)
    rows = list(iter_events(engine, EVERYTHING, criteria, limit=50, chunk=7))
    assert len(rows) == 50
    assert [r.time_us for r in rows] == sorted((r.time_us for r in rows), reverse=True)
    assert {r.hostname for r in rows} <= {"sales-01", "SALES-02", "hr-01"}


def test_text_searches_page_without_counting(engine: sa.Engine, fleet: dict[str, str]) -> None:
    everything = EventCriteria(since_us=T0 - HOUR, until_us=T0 + 10 * HOUR)
    counted = search_events(engine, EVERYTHING, everything, limit=2)
    assert counted.total == 3 * len(EVENT_KINDS) and counted.has_more
    # A text filter: no total (counting a rare word would read the whole period),
    # but whether another page exists is known from the page query itself.
    texty = EventCriteria(since_us=T0 - HOUR, until_us=T0 + 10 * HOUR, text="/")
    first = search_events(engine, EVERYTHING, texty, limit=2)
    assert first.total is None and not first.total_capped
    assert len(first.events) == 2 and first.has_more
    rest = search_events(engine, EVERYTHING, texty, offset=2, limit=1000)
    assert not rest.has_more
    every = search_events(engine, EVERYTHING, texty, limit=1000)
    assert [e.seq for e in every.events] == [e.seq for e in first.events + rest.events]
