"""Leases for the background jobs that several server replicas share.

A job (``notify``, ``state_rules``, ``retention_purge``) has one row in ``jobs``. A
replica runs it only while it holds the row's lease: ``acquire_lease`` takes it with a
conditional UPDATE (free, expired, or already ours — and, for periodic jobs, due) and
checks the row count, so two replicas never both think they hold it. A replica that
dies simply lets its lease expire. ``state`` is what the job keeps between runs (the
notifier's rate-limit buckets), written only by the lease holder.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.store.schema import jobs

__all__ = ["Lease", "acquire_lease", "finish_lease", "save_job_state"]


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    owner: str
    until_us: int
    last_run_us: int | None
    state: str


def acquire_lease(
    engine: sa.Engine,
    name: str,
    owner: str,
    *,
    now_us: int,
    lease_us: int,
    due_before_us: int | None = None,
) -> Lease | None:
    """Take (or extend) the lease on job ``name`` until ``now_us + lease_us``.

    Succeeds when the lease is free, expired or held by ``owner`` already, and — when
    ``due_before_us`` is given — the job last finished at or before it (never run
    counts as due). Returns the lease with the job's state, or None when another
    replica holds it or the job is not due.
    """
    until = now_us + lease_us
    free = sa.or_(jobs.c.owner == owner, jobs.c.lease_until_us <= now_us)
    due = (
        sa.true()
        if due_before_us is None
        else sa.or_(jobs.c.last_run_us.is_(None), jobs.c.last_run_us <= due_before_us)
    )
    with engine.begin() as conn:
        taken = conn.execute(
            sa.update(jobs)
            .where(jobs.c.name == name, free, due)
            .values(owner=owner, lease_until_us=until)
        ).rowcount
        if taken == 0:
            exists = conn.execute(sa.select(jobs.c.name).where(jobs.c.name == name)).first()
            if exists is not None:
                return None
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(jobs).values(
                            name=name, owner=owner, lease_until_us=until, state=""
                        )
                    )
            except sa.exc.IntegrityError:
                return None  # another replica created the row first: it holds the lease
        row = conn.execute(
            sa.select(jobs.c.last_run_us, jobs.c.state).where(jobs.c.name == name)
        ).one()
    last_run = None if row.last_run_us is None else int(row.last_run_us)
    return Lease(name, owner, until, last_run, str(row.state))


def save_job_state(engine: sa.Engine, lease: Lease, state: str) -> bool:
    """Store ``state`` if ``lease`` is still held; False when it was lost."""
    with engine.begin() as conn:
        return (
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.name == lease.name, jobs.c.owner == lease.owner)
                .values(state=state)
            ).rowcount
            == 1
        )


def finish_lease(engine: sa.Engine, lease: Lease, *, finished_us: int) -> None:
    """Record a finished run and free the lease (another replica may take the next)."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.name == lease.name, jobs.c.owner == lease.owner)
            .values(last_run_us=finished_us, lease_until_us=0)
        )
