"""Imports are atomic: a refused file changes nothing and says why; a good one
replaces what it names."""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sekimori.clock import now_us
from sekimori.server.store.schema import (
    kev_entries,
    vuln_affected,
    vuln_aliases,
    vuln_feed_imports,
    vulnerabilities,
)
from sekimori.server.store.vulns import feed_status
from sekimori.server.vuln.feeds import FeedError
from sekimori.server.vuln.importer import import_feed
from tests.server.vuln.fixtures import KEV, NVD, osv_record, osv_zip

TABLES = (vulnerabilities, vuln_aliases, vuln_affected, kev_entries)


def _state(engine: sa.Engine) -> str:
    """A digest of every row of the vulnerability tables."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in TABLES:
            key = [c for c in table.c if c.name != "id"]
            for row in conn.execute(sa.select(*key).order_by(*key)):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def _import(engine: sa.Engine, data: bytes, source: str, kind: str | None = None) -> None:
    import_feed(engine, data, source=source, imported_by="test", now_us=now_us(), kind=kind)


@pytest.fixture
def loaded(engine: sa.Engine) -> sa.Engine:
    _import(engine, osv_zip(), "all.zip")
    _import(engine, NVD.read_bytes(), "nvd.json")
    _import(engine, KEV.read_bytes(), "kev.json")
    return engine


def test_refused_files_change_nothing_and_are_logged(loaded: sa.Engine) -> None:
    before = _state(loaded)
    bad_record = json.loads(osv_record("DEBIAN-CVE-2005-4808"))
    bad_record["affected"][0]["package"]["name"] = 42
    kev = json.loads(KEV.read_bytes())
    kev["vulnerabilities"] = kev["vulnerabilities"][:3]
    zip_data = osv_zip()
    refused = [
        # One malformed record among good ones: the whole zip is refused.
        (
            osv_zip(extra={"DEBIAN-CVE-2005-4808.json": json.dumps(bad_record).encode()}),
            None,
            "DEBIAN-CVE-2005-4808",
        ),
        (zip_data[: len(zip_data) // 2], None, "zip"),
        (json.dumps(kev).encode(), "kev", "truncated"),
        (NVD.read_bytes()[:-10], "nvd", "NVD file"),
    ]
    for data, kind, reason in refused:
        with pytest.raises(FeedError, match=reason):
            _import(loaded, data, "bad", kind)
        assert _state(loaded) == before
    with loaded.connect() as conn:
        statuses = conn.execute(
            sa.select(vuln_feed_imports.c.kind, vuln_feed_imports.c.status).order_by(
                vuln_feed_imports.c.id
            )
        ).all()
    assert [s for _, s in statuses] == ["ok"] * 3 + ["failed"] * 4
    kev_status = next(s for s in feed_status(loaded, now_us=now_us()) if s.kind == "kev")
    assert kev_status.records == 7 and kev_status.last_error is not None
    assert "truncated" in kev_status.last_error


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.floats(0.01, 0.99))
def test_any_truncated_zip_changes_nothing(loaded: sa.Engine, fraction: float) -> None:
    before = _state(loaded)
    data = osv_zip()
    with pytest.raises(FeedError):
        _import(loaded, data[: int(len(data) * fraction)], "cut.zip")
    assert _state(loaded) == before


def test_reimport_replaces_and_withdrawn_deletes(loaded: sa.Engine) -> None:
    with loaded.connect() as conn:
        ranges = conn.execute(sa.select(sa.func.count()).select_from(vuln_affected)).scalar_one()
    _import(loaded, osv_record("USN-8820-1"), "USN-8820-1.json")
    with loaded.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(vuln_affected)).scalar_one()
            == ranges
        )
    withdrawn = json.loads(osv_record("USN-8820-1"))
    withdrawn["withdrawn"] = "2026-10-01T00:00:00Z"
    _import(loaded, json.dumps(withdrawn).encode(), "USN-8820-1.json")
    with loaded.connect() as conn:
        ids = set(conn.execute(sa.select(vulnerabilities.c.id)).scalars())
        left = conn.execute(
            sa.select(sa.func.count()).where(vuln_affected.c.vuln_id == "USN-8820-1")
        ).scalar_one()
    assert "USN-8820-1" not in ids and left == 0
    assert "DEBIAN-CVE-2024-10041" in ids  # a single record does not replace the rest
