"""Shared fixtures: a store URL for each backend, and real server processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from tests.processes import ServerProcess

# The console's browser fixtures (one Chromium per session, a context per test).
pytest_plugins = ("tests.console.browser",)

# The suite runs real servers and desktops beside the property tests on 2 cores: a
# wall-clock deadline per example would fail on load, not on a bug.
settings.register_profile("sekimori", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sekimori")


PG_URL = os.environ.get("SEKIMORI_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend the suite supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'sekimori.db'}"
        return
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("SEKIMORI_TEST_PG_URL is not set: run the suite with `make test`")
        pytest.skip("PostgreSQL tests run under `make test` (throwaway cluster)")
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    """A running server on its own data directory and database."""
    proc = ServerProcess(tmp_path / "server", database_url).start()
    try:
        yield proc
    finally:
        proc.dispose()
