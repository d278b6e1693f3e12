"""The retention purge job (SQLite and PostgreSQL): deletes what is past each group's
retention, is audited, runs once per interval across replicas."""

from __future__ import annotations

import sqlalchemy as sa

from sekimori.server.alerting.retention import RetentionPurge
from sekimori.server.policies import validate_policy
from sekimori.server.store.audit import search_audit
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.policies import save_policy
from sekimori.server.store.schema import events
from sekimori.settings import ServerSettings
from tests.console.seed import add_device
from tests.server.alerting.conftest import Clock

DAY = 86_400_000_000


def _events(engine: sa.Engine, device_id: str, times: list[int], first: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(events),
            [
                {
                    "device_id": device_id,
                    "seq": first + i,
                    "time_us": t,
                    "received_us": t,
                    "kind": "web.visit",
                    "os_user": "alice",
                    "payload": "{}",
                }
                for i, t in enumerate(times)
            ],
        )


def _times(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(int(t) for t in conn.execute(sa.select(events.c.time_us)).scalars())


def test_the_purge_deletes_expired_events_once_per_interval(
    engine: sa.Engine, clock: Clock
) -> None:
    with engine.begin() as conn:
        group = ensure_group(conn, "sales")
    device = add_device(engine, "pc-1", group="sales")
    save_policy(
        engine, group, validate_policy({"retention_days": {"web": 7}}), "alice", now_us=clock.now
    )
    now = clock.now
    _events(engine, device, [now - 8 * DAY, now - 7 * DAY - 1, now - 6 * DAY], first=1)
    settings = ServerSettings(retention_purge_seconds=3600)
    first = RetentionPurge(engine, settings, owner="a", clock=clock)
    second = RetentionPurge(engine, settings, owner="b", clock=clock)
    assert first.run_once() == {(group, "web"): 2}
    assert _times(engine) == [now - 6 * DAY]
    [entry] = search_audit(engine, action="retention.purge").entries
    assert entry.actor == "system:retention"
    # Purged a moment ago (by another replica): not again before the interval.
    clock.advance(3599)
    _events(engine, device, [now - 30 * DAY], first=10)
    assert second.run_once() is None
    assert len(_times(engine)) == 2
    clock.advance(1)
    assert second.run_once() == {(group, "web"): 1}
    assert _times(engine) == [now - 6 * DAY]
