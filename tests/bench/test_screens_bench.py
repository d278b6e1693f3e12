"""``sekimori bench screens`` runs for real on a few steps (Xvfb at 1920x1080, openbox,
Chromium, xterm): every option is measured on changed frames and the unchanged screen's
frames are skipped. The figures are for docs/benchmarks.md, not for a timed test."""

from __future__ import annotations

import os
import re

import pytest

from sekimori.bench._desktop import missing_programs
from sekimori.bench.screens import OPTIONS, run_bench


@pytest.mark.slow
def test_the_screens_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    missing = missing_programs()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"needs {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")
    assert run_bench(6) == 0
    out = capsys.readouterr().out
    match = re.search(
        r"6 steps captured, (\d+) changed frames encoded; "
        r"unchanged screen: (\d+)/6 frames skipped",
        out,
    )
    assert match, out
    assert int(match.group(1)) >= 3  # focus changes over the browser repaint the screen
    assert int(match.group(2)) == 6
    assert "baseline, capture alone: p50" in out
    for option in OPTIONS:
        line = next(line for line in out.splitlines() if line.startswith(str(option)))
        assert "nan" not in line, line
    assert "<- chosen" in out and "mean frame" in out
