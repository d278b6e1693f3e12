"""The store fixture the server tests share: a migrated engine on each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from sekimori.server.store.engine import create_store_engine, migrate


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """A fresh store, migrated to the newest schema (SQLite and PostgreSQL)."""
    eng = create_store_engine(database_url)
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()
