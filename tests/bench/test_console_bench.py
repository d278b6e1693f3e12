"""``sekimori bench console`` end to end at a tiny scale: the generated store holds
exactly what was asked, stored as ingest stores it, and every page of the console's
URL contract is timed on a real server process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from sekimori.bench import console
from sekimori.bench._console_store import store_directory
from sekimori.cli.main import main as cli_main
from sekimori.protocol.events import EVENT_KINDS
from sekimori.server.event_fields import event_fields
from sekimori.server.store.engine import create_store_engine, migrate

DEVICES = 50
EVENTS = 20_000
REPEAT = 2


def _index_ddl(db: sqlite3.Connection) -> set[str]:
    return {
        sql
        for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }


def _check_store(database: Path, tmp_path: Path) -> None:
    encoder = msgspec.json.Encoder()
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM devices").fetchone() == (DEVICES,)
        assert db.execute("SELECT count(*) FROM events").fetchone() == (EVENTS,)
        assert db.execute("SELECT count(*) FROM groups").fetchone()[0] >= 20
        # Sequence numbers run 1..n per device, and acked_seq is each device's last.
        assert db.execute(
            "SELECT count(*) FROM devices d WHERE d.acked_seq != "
            "(SELECT count(*) FROM events e WHERE e.device_id = d.id) OR d.acked_seq != "
            "(SELECT max(seq) FROM events e WHERE e.device_id = d.id)"
        ).fetchone() == (0,)
        # Every device has its inventory, so device pages have something to show.
        for kind in ("inventory.hardware", "inventory.software"):
            assert db.execute(
                "SELECT count(DISTINCT device_id) FROM events WHERE kind = ?", (kind,)
            ).fetchone() == (DEVICES,)
        kinds = {k for (k,) in db.execute("SELECT DISTINCT kind FROM events")}
        assert {
            "web.visit", "window.focus", "process.started", "file.copied_to_removable",
            "device.usb_attached", "session.logon", "agent.collector_health",
        } <= kinds  # fmt: skip
        # Byte for byte what ingest stores: the payload is msgspec's JSON of the real
        # struct, and tag/subject are event_fields of it.
        rows = db.execute("SELECT kind, payload, tag, subject, os_user FROM events")
        for kind, payload, tag, subject, os_user in rows:
            decoded = msgspec.json.decode(payload, type=EVENT_KINDS[kind])
            assert encoder.encode(decoded).decode("utf-8") == payload
            assert event_fields(decoded) == (tag, subject)
            assert "zqx" not in payload and (os_user is None or "zqx" not in os_user)
        loaded_indexes = _index_ddl(db)
    # The events table's indexes were dropped for the load and re-created exactly.
    fresh = tmp_path / "fresh.db"
    engine = create_store_engine(f"sqlite:///{fresh}")
    migrate(engine)
    engine.dispose()
    with sqlite3.connect(fresh) as db:
        assert loaded_indexes == _index_ddl(db)


def test_console_bench_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "keep"
    report = console.run(keep, devices=DEVICES, events=EVENTS, repeat=REPEAT, log=lambda _: None)

    assert (report.devices, report.events) == (DEVICES, EVENTS)
    assert sum(report.store.per_kind.values()) == EVENTS
    expected = [p.name for p in console.pages(report.store.probe, DEVICES)]
    assert [r.page.name for r in report.pages] == expected
    for result in report.pages:
        assert result.status == "ok", (result.page.path, result.status)
        assert len(result.server_ms) == REPEAT
        assert all(ms > 0 for ms in result.server_ms)
    assert len(report.healthz.client_ms) == REPEAT
    _check_store(report.store.database, tmp_path)

    # The CLI reuses the kept store and prints every page's line.
    capsys.readouterr()
    status = cli_main(
        ["bench", "console", "--devices", str(DEVICES), "--events", str(EVENTS),
         "--repeat", "1", "--keep", str(keep)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"reusing the store in {store_directory(keep, DEVICES, EVENTS)}" in out
    for name in expected:
        assert f"  {name} " in out
    assert "baseline: GET /healthz round trip" in out
    assert f"store holds {DEVICES:,} devices and {EVENTS:,} events" in out


def test_console_bench_refuses_too_few_events(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "console", "--devices", "10", "--events", "19"]) == 2
    assert "--events >= 2 x --devices" in capsys.readouterr().err
