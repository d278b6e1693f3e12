"""`sekimori bench ingest --rules` runs for real on a small load: both halves stream,
every event is stored, the rules half raises alerts and the no-rules half none (the
figure itself is for docs/benchmarks.md, not for a timed test)."""

from __future__ import annotations

import pytest

from sekimori.bench.ingest_rules import run_rules_bench


@pytest.mark.slow
def test_the_rules_benchmark_runs_both_halves(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_rules_bench(2, 3000) == 0
    out = capsys.readouterr().out
    assert "no rules:" in out and "built-in pack + 100 rules:" in out
    assert "ratio rules / no rules:" in out
