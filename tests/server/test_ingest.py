"""The ingest writer: group commit, acks after commit, poison-batch isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.ingest import IngestWriter, StoreUnavailable
from sekimori.server.metrics import Metrics
from sekimori.server.store.engine import create_store_engine, migrate
from sekimori.server.store.events import EventRow, StoredBatch
from tests.server.test_store import _add_device, _rows


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = create_store_engine(database_url)
    migrate(eng)
    _add_device(eng, "d1")
    _add_device(eng, "d2")
    try:
        yield eng
    finally:
        eng.dispose()


def test_every_future_resolves_after_commit_and_a_bad_batch_fails_alone(
    engine: sa.Engine,
) -> None:
    metrics = Metrics()
    writer = IngestWriter(engine, metrics, commit_events=1_000_000)
    # A row the store refuses (NULL kind violates NOT NULL) poisons its group commit.
    bad_row: EventRow = ("d2", 1, 1, now_us(), None, None, "{}", None, None)  # type: ignore[assignment]
    poison = StoredBatch(device_id="d2", through_seq=1, rows=[bad_row])

    async def scenario() -> list[object]:
        futures = [
            writer.submit(_rows("d1", range(1, 1001))),
            writer.submit(poison),
            writer.submit(_rows("d1", range(1001, 2001))),
        ]
        writer.start()
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        results = asyncio.run(scenario())
    finally:
        writer.stop()
    assert isinstance(results[0], StoredBatch) and results[0].inserted == 1000
    assert isinstance(results[1], StoreUnavailable)
    assert isinstance(results[2], StoredBatch) and results[2].inserted == 1000
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 2000
        marks: dict[str, int] = dict(
            conn.execute(sa.text("SELECT id, acked_seq FROM devices")).all()
        )
    assert marks == {"d1": 2000, "d2": 0}
    assert metrics.events_ingested._value.get() == 2000
