"""The dashboard against a real server: counts per state, new devices, outdated
agents (compared as numbers), the 24-hour activity chart — all within the user's
groups."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import closing

import pytest

from sekimori.clock import now_us
from sekimori.protocol.events.agent import AgentLog
from sekimori.server.store.devices import revoke_device
from tests.console.conftest import ConsoleClient, as_user
from tests.console.seed import SeedEvent, add_device, add_events
from tests.processes import ServerProcess

HOUR = 3_600_000_000
DAY = 24 * HOUR


@pytest.fixture(scope="module")
def seeded(console_server: ServerProcess) -> dict[str, str]:
    engine = console_server.engine()
    now = now_us()
    made = {
        # sales: one online, one offline with an outdated agent (0.0.9 < 0.1.0), one
        # revoked, one enrolled long ago running a newer agent ("0.10.0" > "0.9.0"
        # as numbers, though not as text).
        "sales-online": add_device(
            engine, "sales-online", group="sales", connected=True, last_seen_us=now
        ),
        "sales-old": add_device(
            engine, "sales-old", group="sales", agent_version="0.0.9", last_seen_us=now - DAY
        ),
        "sales-revoked": add_device(engine, "sales-revoked", group="sales"),
        "sales-veteran": add_device(
            engine,
            "sales-veteran",
            group="sales",
            agent_version="0.10.0",
            enrolled_us=now - 30 * DAY,
        ),
        # hr: two offline, both outdated.
        "hr-1": add_device(engine, "hr-1", group="hr", agent_version="0.0.1"),
        "hr-2": add_device(engine, "hr-2", group="hr", agent_version="0.0.1"),
    }
    revoke_device(engine, made["sales-revoked"])
    log = AgentLog(level="info", source="test", message="hello")
    add_events(
        engine,
        made["sales-online"],
        [SeedEvent("agent.log", log, time_us=now - 2 * HOUR)] * 3
        + [SeedEvent("agent.log", log, time_us=now - 30 * HOUR)],  # outside the 24 h
    )
    add_events(engine, made["hr-1"], [SeedEvent("agent.log", log, time_us=now - HOUR)] * 5)
    return made


def stats(page: str) -> dict[str, int]:
    found = re.findall(
        r'data-stat="(\w+)">\s*(?:<a class="n" href="[^"]*">|<div class="n">)(\d+)<', page
    )
    return {name: int(n) for name, n in found}


def chart(page: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="activity-chart">(.*?)</script>', page)
    assert found, page
    data: dict[str, object] = json.loads(found.group(1))
    return data


def events_total(page: str) -> int:
    datasets = chart(page)["datasets"]
    assert isinstance(datasets, list)
    return sum(datasets[0]["data"])


@pytest.fixture(scope="module")
def alice(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with closing(as_user(console_server, "alice")) as http:
        yield http


def test_counts_for_every_group(alice: ConsoleClient, seeded: dict[str, str]) -> None:
    page = alice.get("/")
    assert page.status_code == 200
    assert stats(page.text) == {
        "online": 1,
        "offline": 4,
        "revoked": 1,
        "total": 6,
        "new": 5,
        "outdated": 3,
    }
    # No alert exists yet: the alerts card counts none and says so.
    card = page.text[page.text.index('id="alerts-card"') :]
    card = card[: card.index("</section>")]
    counts = re.findall(r'data-severity="(\w+)">\s*<a class="n" href="[^"]*">(\d+)<', card)
    assert counts == [(s, "0") for s in ("critical", "high", "medium", "low", "info")]
    assert "No open alert." in card
    assert 'href="/devices?version=outdated"' in page.text
    assert f'href="/devices/{seeded["sales-online"]}"' in page.text


def test_activity_chart_counts_the_last_24_hours(
    alice: ConsoleClient, seeded: dict[str, str]
) -> None:
    data = chart(alice.get("/").text)
    labels = data["labels"]
    assert isinstance(labels, list) and len(labels) == 24
    assert all(re.fullmatch(r"\d\d:00", label) for label in labels)
    assert events_total(alice.get("/").text) == 8
    assert "Events recorded per hour, 8 in all." in alice.get("/").text


def test_a_group_limited_operator_sees_their_groups_only(
    console_server: ServerProcess, seeded: dict[str, str]
) -> None:
    with closing(as_user(console_server, "bob")) as bob:
        page = bob.get("/").text
    assert stats(page) == {
        "online": 1,
        "offline": 2,
        "revoked": 1,
        "total": 4,
        "new": 3,
        "outdated": 1,
    }
    assert events_total(page) == 3
    assert seeded["hr-1"] not in page


def test_a_viewer_sees_counts_without_device_links(
    console_server: ServerProcess, seeded: dict[str, str]
) -> None:
    with closing(as_user(console_server, "dave")) as dave:
        page = dave.get("/").text
    assert stats(page)["total"] == 6
    assert 'href="/devices' not in page
    assert "sales-online" in page  # the latest devices, as text
