"""Throwaway PostgreSQL databases for a benchmark run.

The ingest benchmark checks that the store holds *exactly* the events it sent, and
its baseline needs an empty table, so each run creates fresh databases in the
cluster named by ``--database-url`` and drops them afterwards. That needs the
CREATEDB privilege.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import sqlalchemy as sa

__all__ = ["libpq_url", "temporary_database"]


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://...`` or ``postgresql://...`` -> ``postgresql://...``."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string()}")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def temporary_database(url: str, purpose: str) -> Iterator[str]:
    """Create ``sekimori_bench_<purpose>_<random>`` next to ``url``'s database, yield
    its URL, drop it afterwards (forcibly: a crashed server may still hold it)."""
    import psycopg
    from psycopg import sql

    admin = libpq_url(url)
    name = f"sekimori_bench_{purpose}_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield sa.engine.make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
