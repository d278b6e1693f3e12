"""The hash-chained audit trail on both backends: every kind of tampering is found by
``verify_chain`` and by ``sekimori audit verify``, and concurrent writers (threads,
and on PostgreSQL separate engines as separate replicas would be) form one chain."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sekimori.server.store.audit import append_audit, search_audit, verify_chain
from sekimori.server.store.engine import create_store_engine, migrate
from sekimori.server.store.schema import audit_head, audit_log
from tests.processes import ServerProcess

ENTRIES = 8


def _fill(engine: sa.Engine, n: int = ENTRIES) -> None:
    for i in range(n):
        append_audit(
            engine,
            actor=f"user{i % 3}",
            action="logs.search",
            target=f"pc-{i}",
            detail={"q": f"term {i}", "n": i, "名前": "日本語"},
            client_ip="192.0.2.7",
        )


def _cli_verify(tmp_path: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = ServerProcess(tmp_path / "cli-data", database_url).env
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "sekimori", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _sql(engine: sa.Engine, statement: Any) -> None:
    with engine.begin() as conn:
        conn.execute(statement)


def _sql_all(engine: sa.Engine, *statements: Any) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def test_an_untouched_chain_verifies(engine: sa.Engine, tmp_path: Path, database_url: str) -> None:
    empty = verify_chain(engine)
    assert empty.intact and empty.entries == 0
    _fill(engine)
    report = verify_chain(engine)
    assert report.intact and report.entries == ENTRIES
    done = _cli_verify(tmp_path, database_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{ENTRIES} entries, chain intact"


TAMPERING: dict[str, tuple[Callable[[sa.Engine], None], list[str]]] = {
    "edited detail": (
        lambda e: _sql(
            e, sa.update(audit_log).where(audit_log.c.seq == 4).values(detail='{"q":"nothing"}')
        ),
        ["entry 4: its content was changed (hash mismatch)"],
    ),
    "deleted middle entry": (
        lambda e: _sql(e, sa.delete(audit_log).where(audit_log.c.seq == 5)),
        ["entries 5..5 are missing", "entry 6: does not link to the entry before it"],
    ),
    "deleted newest entries": (
        lambda e: _sql(e, sa.delete(audit_log).where(audit_log.c.seq > ENTRIES - 3)),
        [f"the trail ends at entry {ENTRIES - 3} but {ENTRIES} were written"],
    ),
    "deleted newest entries and head": (
        lambda e: _sql_all(
            e, sa.delete(audit_log).where(audit_log.c.seq > ENTRIES - 3), sa.delete(audit_head)
        ),
        ["the trail's head record is missing"],
    ),
    "changed prev_hash": (
        lambda e: _sql(
            e, sa.update(audit_log).where(audit_log.c.seq == 3).values(prev_hash="f" * 64)
        ),
        [
            "entry 3: does not link to the entry before it",
            "entry 3: its content was changed (hash mismatch)",
        ],
    ),
    "forged hash to match the edit": (
        # Recomputing an edited entry's own hash does not help: the next entry's link
        # (prev_hash) no longer matches.
        lambda e: _sql(e, sa.update(audit_log).where(audit_log.c.seq == 2).values(hash="0" * 64)),
        [
            "entry 2: its content was changed (hash mismatch)",
            "entry 3: does not link to the entry before it",
        ],
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_detected(
    engine: sa.Engine, tmp_path: Path, database_url: str, case: str
) -> None:
    _fill(engine)
    tamper, expected = TAMPERING[case]
    tamper(engine)
    report = verify_chain(engine)
    assert not report.intact
    assert report.problems == expected
    done = _cli_verify(tmp_path, database_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "chain BROKEN" in done.stdout
    for problem in expected:
        assert f"  {problem}\n" in done.stdout


def test_appends_after_tampering_do_not_hide_it(engine: sa.Engine) -> None:
    _fill(engine)
    _sql(engine, sa.delete(audit_log).where(audit_log.c.seq == 2))
    _fill(engine, 3)
    assert "entries 2..2 are missing" in verify_chain(engine).problems


def _append_from_threads(engines: list[sa.Engine], per_thread: int) -> None:
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def work(index: int, eng: sa.Engine) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                append_audit(eng, actor=f"t{index}", action="test.concurrent", target=str(i))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, e)) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def _assert_one_chain(engine: sa.Engine, total: int) -> None:
    report = verify_chain(engine)
    assert report.intact, report.problems
    assert report.entries == total
    with engine.connect() as conn:
        seqs = conn.execute(sa.select(audit_log.c.seq).order_by(audit_log.c.seq)).scalars().all()
    assert list(seqs) == list(range(1, total + 1))


def test_concurrent_appends_form_one_chain(engine: sa.Engine) -> None:
    # Starting from an empty trail, so the threads also race to create the head row.
    _append_from_threads([engine] * 6, 25)
    _assert_one_chain(engine, 150)


def test_appends_from_separate_engines_form_one_chain(database_url: str) -> None:
    """Several engines stand for several server replicas (and the CLI) on one store."""
    first = create_store_engine(database_url)
    migrate(first)
    engines = [first] + [create_store_engine(database_url) for _ in range(3)]
    try:
        _append_from_threads(engines, 20)
        _assert_one_chain(first, 80)
        assert {e.actor for e in search_audit(first, limit=100).entries} == {
            "t0",
            "t1",
            "t2",
            "t3",
        }
    finally:
        for eng in engines:
            eng.dispose()


_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=40,
)
_HEX = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "seq": st.integers(min_value=-(2**40), max_value=2**40).filter(lambda v: not 1 <= v <= ENTRIES),
    "time_us": st.integers(min_value=0, max_value=2**62),
    "actor": _TEXT,
    "client_ip": _TEXT,
    "action": _TEXT,
    "target": _TEXT,
    "detail": _TEXT,
    "prev_hash": _HEX,
    "hash": _HEX,
}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seq=st.integers(min_value=1, max_value=ENTRIES),
    edit=st.sampled_from(sorted(_FIELD_VALUES)).flatmap(
        lambda name: st.tuples(st.just(name), _FIELD_VALUES[name])
    ),
)
def test_any_single_field_edit_is_detected(
    engine: sa.Engine, seq: int, edit: tuple[str, Any]
) -> None:
    if verify_chain(engine).entries == 0:
        _fill(engine)
    name, value = edit
    with engine.connect() as conn:
        original = conn.execute(sa.select(audit_log).where(audit_log.c.seq == seq)).one()
    if getattr(original, name) == value:
        return  # not an edit
    _sql(engine, sa.update(audit_log).where(audit_log.c.seq == seq).values({name: value}))
    try:
        assert not verify_chain(engine).intact
    finally:
        edited = value if name == "seq" else seq
        _sql(
            engine,
            sa.update(audit_log)
            .where(audit_log.c.seq == edited)
            .values({name: getattr(original, name)}),
        )
    assert verify_chain(engine).intact
