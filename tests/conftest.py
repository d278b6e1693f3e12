"""Shared fixtures: a store URL for each backend, and real server processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from sekimori.protocol.events.screen import ScreenFrame
from tests.processes import ServerProcess

# The console's browser fixtures (one Chromium per session, a context per test).
pytest_plugins = ("tests.console.browser",)

# The suite runs real servers and desktops beside the property tests on 2 cores: a
# wall-clock deadline per example would fail on load, not on a bug.
settings.register_profile("sekimori", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sekimori")

# Payloads with value constraints (msgspec.Meta) that st.from_type cannot see.
st.register_type_strategy(
    ScreenFrame,
    st.builds(
        ScreenFrame,
        monitor=st.integers(0, 64),
        width=st.integers(1, 16384),
        height=st.integers(1, 16384),
        screen_width=st.integers(1, 65535),
        screen_height=st.integers(1, 65535),
        format=st.sampled_from(["jpeg", "webp", "png"]),
        image=st.binary(max_size=64),
        sha256=st.text("0123456789abcdef", min_size=64, max_size=64),
        trigger=st.sampled_from(["window_change", "interval", "rule", "live"]),
        title=st.none() | st.text(max_size=20),
        application=st.none() | st.text(max_size=20),
        user=st.none() | st.text(max_size=20),
    ),
)


PG_URL = os.environ.get("SEKIMORI_TEST_PG_URL")


@pytest.fixture
def no_sekimori_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests running the CLI in this process: the settings read every SEKIMORI_*
    variable, the suite's own (SEKIMORI_TEST_PG_URL) among them."""
    for name in [n for n in os.environ if n.startswith("SEKIMORI_")]:
        monkeypatch.delenv(name)


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
