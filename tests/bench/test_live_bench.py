"""`sekimori bench live` runs for real for a few seconds: the pictures arrive at the
viewer, the report gives the frame rate and the latency percentiles (the figures
themselves are for docs/benchmarks.md, not for a timed test)."""

from __future__ import annotations

import argparse
import re

import pytest

from sekimori.bench import live
from sekimori.bench._desktop import missing_programs


@pytest.mark.slow
def test_the_live_view_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    missing = [p for p in missing_programs() if p != "chromium"]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    assert live.main(argparse.Namespace(seconds=3.0)) == 0
    out = capsys.readouterr().out
    rate = re.search(r"frame rate:\s+([0-9.]+) /s", out)
    latency = re.search(r"p50 ([0-9]+) ms, p95 ([0-9]+) ms", out)
    assert rate and latency, out
    assert float(rate.group(1)) > 0
    assert int(latency.group(1)) <= int(latency.group(2))


def test_a_duration_that_is_not_positive_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert live.main(argparse.Namespace(seconds=0.0)) == 2
    assert "--seconds must be positive" in capsys.readouterr().err
