"""Rollups kept at ingest equal a recomputation from the stored events, however the
batches arrive (resends, overlaps, several devices in one group commit)."""

from __future__ import annotations

import json

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sekimori.server.store.events import EventRow, StoredBatch, write_batches
from sekimori.server.store.rollups import HOUR_US, rebuild_rollups
from sekimori.server.store.schema import events, groups, usage_hourly
from sekimori.server.store.scope import EVERYTHING
from tests.console.seed import add_device

T0 = 1_709_600_000_000_000  # 2024-03-05, a whole hour plus some


def _row(device: str, seq: int, variant: int) -> EventRow:
    time_us = T0 + (seq * 7 + variant) * 600_000_000  # spread over a few hours
    match variant % 4:
        case 0:
            host = f"h{variant % 3}.example"
            return (device, seq, time_us, time_us, "web.visit", "u", '{"host":"x"}', host, "x")
        case 1:
            app = ["Chromium", "XTerm", ""][variant % 3]
            payload = {
                "previous": {"window": {"application": app}, "start_us": 0, "duration_us": seq}
            }
            return (
                device,
                seq,
                time_us,
                time_us,
                "window.focus",
                "u",
                json.dumps(payload),
                app,
                "",
            )
        case 2:
            return (
                device,
                seq,
                time_us,
                time_us,
                "window.idle",
                "u",
                '{"previous":null}',
                None,
                "",
            )
        case _:
            size = '{"size":%d}' % (seq * 10)  # noqa: UP031 - JSON text
            return (device, seq, time_us, time_us, "file.copied_to_removable", None, size, "", "")


def _rollups(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(usage_hourly).order_by(*usage_hourly.primary_key.columns)
            )
        ]


# Each batch: (device index, first seq, last seq, variant); batches may repeat or
# overlap earlier ones (a resend after a lost acknowledgement).
_batches = st.lists(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 12), st.integers(1, 5), st.integers(0, 11)),
        min_size=1,
        max_size=4,
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(commits=_batches)
def test_rollups_equal_a_recomputation(
    engine: sa.Engine, commits: list[list[tuple[int, int, int, int]]]
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(events))
        conn.execute(sa.delete(usage_hourly))
    ids = [add_device(engine, f"pc-{n}", group=["sales", "hr"][n % 2]) for n in range(3)]
    high = [0, 0, 0]
    for commit in commits:
        batches = []
        for device, start, length, variant in commit:
            # As agents send: from at most the next unstored seq on (a resend or an
            # overlap), never leaving a gap below what is stored.
            first = min(start, high[device] + 1)
            high[device] = max(high[device], first + length - 1)
            # A variant per seq, fixed for the device: a resend carries the same rows.
            rows = [_row(ids[device], s, (s + device) % 12) for s in range(first, first + length)]
            # through_seq is the last row's: ingest never stores a seq at or below
            # a device's acked_seq later (the channel drops them), which the
            # rollups rely on.
            batches.append(StoredBatch(ids[device], first + length - 1, rows))
            del variant
        with engine.begin() as conn:
            write_batches(conn, batches)
    kept = _rollups(engine)
    rebuild_rollups(engine)
    assert kept == _rollups(engine)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
    assert sum(int(r[4]) for r in kept) == stored  # type: ignore[call-overload]


def test_rebuild_from_an_hour_on_and_scope_by_group(engine: sa.Engine) -> None:
    from sekimori.server.store.device_queries import events_per_hour
    from sekimori.server.store.scope import Scope

    sales = add_device(engine, "sales-1", group="sales")
    hr = add_device(engine, "hr-1", group="hr")
    rows = [_row(sales, s, 0) for s in range(1, 9)]
    with engine.begin() as conn:
        write_batches(conn, [StoredBatch(sales, 8, rows), StoredBatch(hr, 1, [_row(hr, 1, 0)])])
    before = _rollups(engine)
    assert rebuild_rollups(engine, since_us=T0 + 2 * HOUR_US) > 0
    assert _rollups(engine) == before
    until = (max(r[2] for r in rows) // HOUR_US + 1) * HOUR_US
    with engine.connect() as conn:
        sales_id = conn.execute(sa.select(groups.c.id).where(groups.c.name == "sales")).scalar_one()
    only_sales = Scope(all_groups=False, group_ids=frozenset({sales_id}))
    assert sum(n for _, n in events_per_hour(engine, only_sales, until_us=until)) == 8
    assert sum(n for _, n in events_per_hour(engine, EVERYTHING, until_us=until)) == 9
