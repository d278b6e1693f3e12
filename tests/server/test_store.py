"""The store on both backends: migrations, tokens, devices, event writes."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from alembic import command

from sekimori.clock import now_us
from sekimori.server.store.devices import (
    DeviceNotFound,
    get_device,
    list_devices,
    mark_connected,
    resolve_device_id,
    revoke_device,
)
from sekimori.server.store.engine import alembic_config, migrate
from sekimori.server.store.events import EventRow, StoredBatch, write_batches
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.schema import devices
from sekimori.server.store.tokens import TokenRefused, consume_token, create_token


def _add_device(engine: sa.Engine, device_id: str, hostname: str = "pc") -> None:
    with engine.begin() as conn:
        group_id = ensure_group(conn, "default")
        conn.execute(
            sa.insert(devices).values(
                id=device_id,
                hostname=hostname,
                os="linux",
                os_version="x",
                agent_version="0.1.0",
                group_id=group_id,
                cert_serial="1",
                enrolled_us=now_us(),
                connected=False,
                acked_seq=0,
                outbox_events=0,
                dropped_total=0,
            )
        )


def test_migrations_are_idempotent_and_match_the_schema(engine: sa.Engine) -> None:
    migrate(engine)  # a second time changes nothing
    # `alembic check` fails if schema.py and the migrations disagree.
    command.check(alembic_config(engine))


def test_ensure_group_is_idempotent(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first = ensure_group(conn, "sales")
        assert ensure_group(conn, "sales") == first
        assert ensure_group(conn, "hr") != first
    with pytest.raises(ValueError, match="1-128 printable"), engine.begin() as conn:
        ensure_group(conn, "bad\nname")


def test_a_token_enrolls_exactly_one_device_under_a_race(engine: sa.Engine) -> None:
    token = create_token(engine, group="default", ttl_seconds=60, created_by="t").token
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            with engine.begin() as conn:
                consume_token(conn, token, device_id=f"dev-{i}", expected_group=None)
            outcomes.append("ok")
        except (TokenRefused, sa.exc.OperationalError):
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "refused", "refused", "refused"]


def test_token_lifetime_must_be_positive(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="expire in the future"):
        create_token(engine, group="default", ttl_seconds=0, created_by="t")


def test_devices_revoke_resolve_and_online(engine: sa.Engine) -> None:
    _add_device(engine, "aaaaaaaa-1111", "alpha")
    _add_device(engine, "aaaaaaaa-2222", "beta")
    assert [d.hostname for d in list_devices(engine)] == ["alpha", "beta"]
    assert resolve_device_id(engine, "AAAAAAAA-1111") == "aaaaaaaa-1111"
    assert resolve_device_id(engine, "aaaaaaaa-2") == "aaaaaaaa-2222"
    with pytest.raises(DeviceNotFound, match="ambiguous"):
        resolve_device_id(engine, "aaaaaaaa")
    with pytest.raises(DeviceNotFound, match="no device"):
        resolve_device_id(engine, "abc")
    with engine.begin() as conn:
        mark_connected(
            conn,
            "aaaaaaaa-1111",
            hostname="alpha2",
            os="linux",
            os_version="y",
            agent_version="0.2.0",
        )
        device = get_device(conn, "aaaaaaaa-1111")
    assert device is not None
    assert device.hostname == "alpha2" and device.first_seen_us is not None
    assert device.online(now_us(), 15)
    assert not device.online(now_us() + 3_600_000_000, 15), "silent for an hour is offline"
    assert revoke_device(engine, "aaaaaaaa-1111")
    assert not revoke_device(engine, "aaaaaaaa-1111"), "second revoke reports no change"
    with engine.connect() as conn:
        revoked = get_device(conn, "aaaaaaaa-1111")
    assert revoked is not None and revoked.revoked_us is not None
    assert not revoked.online(now_us(), 15)


def _rows(device_id: str, seqs: range) -> StoredBatch:
    rows: list[EventRow] = [
        (device_id, s, s, now_us(), "agent.log", None, f'{{"n":{s}}}', None, None) for s in seqs
    ]
    return StoredBatch(device_id=device_id, through_seq=seqs[-1], rows=rows)


def test_write_batches_dedups_and_only_raises_the_high_water_mark(engine: sa.Engine) -> None:
    _add_device(engine, "d1")
    first = _rows("d1", range(1, 101))
    with engine.begin() as conn:
        write_batches(conn, [first])
    assert first.inserted == 100
    replay = _rows("d1", range(51, 151))
    older = _rows("d1", range(1, 11))
    with engine.begin() as conn:
        write_batches(conn, [replay, older])
    assert replay.inserted == 50
    assert older.inserted == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 150
        device = get_device(conn, "d1")
    assert device is not None and device.acked_seq == 150
