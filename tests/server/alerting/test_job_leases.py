"""Job leases in the store (SQLite and PostgreSQL): one holder at a time, even when
replicas race for a lease that does not exist yet; expiry; due times; state."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from sekimori.server.store.jobs import acquire_lease, finish_lease, save_job_state
from tests.server.alerting.conftest import SECOND, T0


def test_one_holder_until_it_expires_or_finishes(engine: sa.Engine) -> None:
    lease = acquire_lease(engine, "j", "a", now_us=T0, lease_us=10 * SECOND)
    assert lease is not None and lease.last_run_us is None and lease.state == ""
    assert acquire_lease(engine, "j", "b", now_us=T0 + 9 * SECOND, lease_us=SECOND) is None
    # The holder extends it.
    assert acquire_lease(engine, "j", "a", now_us=T0 + 9 * SECOND, lease_us=10 * SECOND)
    assert acquire_lease(engine, "j", "b", now_us=T0 + 18 * SECOND, lease_us=SECOND) is None
    taken = acquire_lease(engine, "j", "b", now_us=T0 + 19 * SECOND, lease_us=SECOND)
    assert taken is not None
    # The old holder lost it: its state is not written.
    assert not save_job_state(engine, lease, "old")
    assert save_job_state(engine, taken, "new")
    finish_lease(engine, taken, finished_us=T0 + 20 * SECOND)
    again = acquire_lease(engine, "j", "a", now_us=T0 + 20 * SECOND, lease_us=SECOND)
    assert again is not None
    assert (again.state, again.last_run_us) == ("new", T0 + 20 * SECOND)


def test_a_job_is_taken_only_when_due(engine: sa.Engine) -> None:
    lease = acquire_lease(engine, "p", "a", now_us=T0, lease_us=SECOND, due_before_us=T0)
    assert lease is not None
    finish_lease(engine, lease, finished_us=T0)
    hour = 3600 * SECOND
    assert (
        acquire_lease(engine, "p", "b", now_us=T0 + 10, lease_us=SECOND, due_before_us=T0 - 1)
        is None
    )
    assert acquire_lease(engine, "p", "b", now_us=T0 + hour, lease_us=SECOND, due_before_us=T0)


def test_replicas_racing_for_a_new_job_get_one_lease(engine: sa.Engine) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(4)

    def race(owner: str) -> None:
        barrier.wait()
        if acquire_lease(engine, "new", owner, now_us=T0, lease_us=60 * SECOND):
            winners.append(owner)

    threads = [threading.Thread(target=race, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
