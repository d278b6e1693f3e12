"""Rules at ingest (server/alerting): alerts commit with their events, are deduplicated,
and threshold windows survive a restart — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.events import Payload
from sekimori.protocol.events.file import FileCopiedToRemovable, FileDeleted
from sekimori.protocol.events.web import WebVisit
from sekimori.server.alerting.evaluator import IngestRules
from sekimori.server.event_fields import event_fields
from sekimori.server.store.alerts import AlertMatch, record_alert_matches
from sekimori.server.store.events import EventRow, StoredBatch, write_batches
from sekimori.server.store.rule_config import (
    save_custom_rules,
    save_rule_list,
    set_rule_enabled,
)
from sekimori.server.store.schema import alert_events, alerts, devices, rule_state
from tests.console.seed import add_device

_json = msgspec.json.Encoder()


def _rows(
    device_id: str, first_seq: int, items: Sequence[tuple[str, Payload]], time_us: int
) -> list[EventRow]:
    rows: list[EventRow] = []
    for offset, (kind, payload) in enumerate(items):
        tag, subject = event_fields(payload)
        rows.append(
            (
                device_id,
                first_seq + offset,
                time_us + offset,
                time_us,
                kind,
                "alice",
                _json.encode(payload).decode(),
                tag,
                subject,
            )
        )
    return rows


def _ingest(engine: sa.Engine, rules: IngestRules, batch: StoredBatch) -> None:
    with engine.begin() as conn:
        floors = write_batches(conn, [batch])
        rules.evaluate(conn, [batch], floors, now_us=now_us())


@dataclass(frozen=True)
class _Alert:
    id: int
    rule_id: str
    status: str
    count: int
    key: str
    summary: str


def _alerts(engine: sa.Engine) -> list[_Alert]:
    with engine.connect() as conn:
        return [
            _Alert(*row)
            for row in conn.execute(
                sa.select(
                    alerts.c.id,
                    alerts.c.rule_id,
                    alerts.c.status,
                    alerts.c.count,
                    alerts.c.key,
                    alerts.c.summary,
                ).order_by(alerts.c.id)
            )
        ]


def _copy(n: int) -> tuple[str, Payload]:
    return (
        "file.copied_to_removable",
        FileCopiedToRemovable(path=f"/media/usb/secret{n}.pdf", operation="created", size=10),
    )


def test_copy_to_removable_raises_one_alert_that_counts_and_ignores_resends(
    engine: sa.Engine,
) -> None:
    device = add_device(engine, "pc-1", group="sales")
    rules = IngestRules()
    t = now_us()
    first = StoredBatch(device, 2, _rows(device, 1, [_copy(1), _copy(2)], t))
    _ingest(engine, rules, first)
    found = _alerts(engine)
    assert [(a.rule_id, a.status, a.count) for a in found] == [
        ("builtin.file_copied_to_removable", "open", 2)
    ]
    assert "/media/usb/secret1.pdf" in found[0].summary
    # The same batch again (a resend after a lost ack) stores and raises nothing.
    _ingest(engine, rules, StoredBatch(device, 2, _rows(device, 1, [_copy(1), _copy(2)], t)))
    _ingest(engine, rules, StoredBatch(device, 3, _rows(device, 3, [_copy(3)], t + 10)))
    found = _alerts(engine)
    assert [(a.rule_id, a.count) for a in found] == [("builtin.file_copied_to_removable", 3)]
    with engine.connect() as conn:
        linked = conn.execute(sa.select(alert_events.c.seq).order_by(alert_events.c.seq))
        assert [r.seq for r in linked] == [1, 2, 3]
    # Once resolved, the next copy opens a new alert.
    with engine.begin() as conn:
        conn.execute(sa.update(alerts).values(status="resolved"))
    _ingest(engine, rules, StoredBatch(device, 4, _rows(device, 4, [_copy(4)], t + 20)))
    assert [(a.status, a.count) for a in _alerts(engine)] == [("resolved", 3), ("open", 1)]


def test_a_rule_switched_off_in_the_store_stops_firing(engine: sa.Engine) -> None:
    device = add_device(engine, "pc-2")
    rules = IngestRules(poll_seconds=0)
    with engine.begin() as conn:
        set_rule_enabled(
            conn, "builtin.file_copied_to_removable", False, actor="alice", now_us=now_us()
        )
    _ingest(engine, rules, StoredBatch(device, 1, _rows(device, 1, [_copy(1)], now_us())))
    assert _alerts(engine) == []
    with engine.begin() as conn:
        set_rule_enabled(
            conn, "builtin.file_copied_to_removable", True, actor="alice", now_us=now_us()
        )
    _ingest(engine, rules, StoredBatch(device, 2, _rows(device, 2, [_copy(2)], now_us())))
    assert [a.count for a in _alerts(engine)] == [1]


def _deletes(n: int, start: int = 0) -> list[tuple[str, Payload]]:
    return [("file.deleted", FileDeleted(path=f"/home/alice/d{start + i}")) for i in range(n)]


def test_mass_deletion_threshold_survives_a_restart_and_fires_once(engine: sa.Engine) -> None:
    device = add_device(engine, "pc-3")
    t = now_us()
    before = IngestRules()
    _ingest(engine, before, StoredBatch(device, 150, _rows(device, 1, _deletes(150), t)))
    assert _alerts(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rule_state)).scalar_one() == 1
    # A new server process: the 150 already counted are loaded from rule_state.
    after = IngestRules()
    _ingest(engine, after, StoredBatch(device, 200, _rows(device, 151, _deletes(50, 150), t)))
    assert _alerts(engine) == []
    _ingest(engine, after, StoredBatch(device, 201, _rows(device, 201, _deletes(1, 200), t)))
    found = _alerts(engine)
    assert [(a.rule_id, a.count) for a in found] == [("builtin.mass_file_deletion", 201)]
    assert "alice" in found[0].key and device in found[0].key
    # The storm goes on within the window: still one alert, no second match.
    _ingest(engine, after, StoredBatch(device, 400, _rows(device, 202, _deletes(199, 201), t)))
    assert [a.count for a in _alerts(engine)] == [201]


def test_a_failed_commit_does_not_count_twice(engine: sa.Engine) -> None:
    device = add_device(engine, "pc-4")
    rules = IngestRules()
    t = now_us()
    batch = StoredBatch(device, 200, _rows(device, 1, _deletes(200), t))
    conn = engine.connect()
    try:
        trans = conn.begin()
        floors = write_batches(conn, [batch])
        rules.evaluate(conn, [batch], floors, now_us=now_us())
        trans.rollback()  # as when the commit fails
    finally:
        conn.close()
    rules.discard([device])
    _ingest(engine, rules, StoredBatch(device, 200, _rows(device, 1, _deletes(200), t)))
    assert _alerts(engine) == []  # 200 is not more than 200
    _ingest(engine, rules, StoredBatch(device, 201, _rows(device, 201, _deletes(1, 200), t)))
    assert [a.count for a in _alerts(engine)] == [201]


def test_custom_rule_with_a_list_fires_on_listed_domains_only(engine: sa.Engine) -> None:
    device = add_device(engine, "pc-5", group="hr")
    source = (
        "- id: custom.gambling\n"
        "  title: Gambling site\n"
        "  severity: low\n"
        "  kinds: [web.visit]\n"
        "  groups: [hr]\n"
        "  match:\n"
        "    host: {domain_in: {list: gambling}}\n"
    )
    with engine.begin() as conn:
        save_rule_list(conn, "gambling", ["casino.example"], actor="alice", now_us=now_us())
        save_custom_rules(conn, "mine", "yaml", source, actor="alice", now_us=now_us())
    rules = IngestRules()

    def visit(host: str) -> tuple[str, Payload]:
        return (
            "web.visit",
            WebVisit(
                url=f"https://{host}/x", title="t", host=host, browser="chromium", profile="d"
            ),
        )

    items = [visit("www.casino.example"), visit("casino.example.org"), visit("news.example")]
    _ingest(engine, rules, StoredBatch(device, 3, _rows(device, 1, items, now_us())))
    found = _alerts(engine)
    assert [(a.rule_id, a.count) for a in found] == [("custom.gambling", 1)]
    assert "www.casino.example" in found[0].summary
    with engine.connect() as conn:
        assert conn.execute(sa.select(devices.c.acked_seq)).scalar_one() == 3


def test_a_device_moving_between_replicas_keeps_its_threshold_window(engine: sa.Engine) -> None:
    device = add_device(engine, "pc-6")
    t = now_us()
    replica_a, replica_b = IngestRules(), IngestRules()
    _ingest(engine, replica_a, StoredBatch(device, 120, _rows(device, 1, _deletes(120), t)))
    # The device reconnects to replica B, counts 80 more there...
    replica_b.forget(device)
    _ingest(engine, replica_b, StoredBatch(device, 200, _rows(device, 121, _deletes(80, 120), t)))
    # ...and comes back to A, whose cached window (120) is stale: forget() on connect.
    replica_a.forget(device)
    _ingest(engine, replica_a, StoredBatch(device, 201, _rows(device, 201, _deletes(1, 200), t)))
    assert [(a.rule_id, a.count) for a in _alerts(engine)] == [("builtin.mass_file_deletion", 201)]


def test_two_writers_opening_the_same_alert_make_one(engine: sa.Engine) -> None:
    device = add_device(engine, "pc-7")
    match = AlertMatch(
        rule_id="builtin.agent_offline",
        title="Agent offline",
        severity="medium",
        device_id=device,
        key="",
        time_us=now_us(),
        summary="offline",
    )
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(15):
                with engine.begin() as conn:
                    record_alert_matches(conn, [match], now_us=now_us())
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [(a.rule_id, a.status, a.count) for a in _alerts(engine)] == [
        ("builtin.agent_offline", "open", 30)
    ]
