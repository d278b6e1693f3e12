"""``sekimori bench agent --workload``: its produced-vs-recorded matching, and a short
real run (real server, agent, Xvfb + openbox + xterm, Chromium)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sekimori.bench._desktop import missing_programs
from sekimori.bench.agent_workload import Produced, Row, compare

WINDOW_START = 1_000


def _produced() -> Produced:
    return Produced(
        spawned=[("churn-0", 100), ("churn-1", 101)],
        created=["/h/a"],
        modified=["/h/m"],
        moved=[("/h/a", "/h/b")],
        deleted=["/h/b"],
        focused=["t1", "t2", "t1"],
        visited=["http://127.0.0.1:1/v0"],
    )


def _window(title: str, time_us: int = 2_000, cause: str = "focus") -> Row:
    payload = {"cause": cause, "window": {"title": title}, "previous": None}
    return Row("window.focus", time_us, payload)


def _process(what: str, pid: int, start: int, argv: list[str] | None = None) -> Row:
    payload: dict[str, object] = {"pid": pid, "start_time_us": start}
    if argv is not None:
        payload["argv"] = argv
    return Row(f"process.{what}", 2_000, payload)


def _complete() -> list[Row]:
    return [
        _process("started", 100, 7, ["churn-0", "0.1"]),
        _process("started", 101, 8, ["churn-1", "0.1"]),
        _process("started", 555, 9, ["/usr/bin/xdotool"]),
        _process("stopped", 100, 7),
        _process("stopped", 101, 8),
        _process("stopped", 101, 3),  # an earlier process with the same pid
        Row("file.created", 2_000, {"path": "/h/a"}),
        Row("file.modified", 2_000, {"path": "/h/m"}),
        Row("file.moved", 2_000, {"src": "/h/a", "dest": "/h/b"}),
        Row("file.deleted", 2_000, {"path": "/h/b"}),
        _window("t1"),
        _window("t2"),
        _window("t1"),
        Row("web.visit", 2_000, {"url": "http://127.0.0.1:1/v0"}),
    ]


def test_everything_recorded_is_matched() -> None:
    checks = compare(_produced(), _complete(), WINDOW_START)
    assert [(c.name, c.produced, c.recorded) for c in checks] == [
        ("process starts", 2, 2),
        ("process stops", 2, 2),
        ("file creations", 1, 1),
        ("file writes", 1, 1),
        ("file renames", 1, 1),
        ("file deletions", 1, 1),
        ("focus changes", 3, 3),
        ("page visits", 1, 1),
    ]
    assert checks[0].extra == 1  # the xdotool start is not the churn's
    assert checks[1].extra == 1  # nor the stop of the pid's earlier process


def test_missing_events_are_named() -> None:
    rows = [
        row
        for row in _complete()
        if not (row.kind == "process.started" and row.payload["pid"] == 101)
        and row.kind not in ("file.moved", "web.visit")
    ]
    by_name = {c.name: c for c in compare(_produced(), rows, WINDOW_START)}
    assert by_name["process starts"].missing == ["churn-1 (pid 101)"]
    # Without its start, its stop cannot be told from that of another process with
    # the same pid: it counts as missing too.
    assert by_name["process stops"].missing == ["churn-1 (pid 101)"]
    assert by_name["file renames"].missing == ["/h/a -> /h/b"]
    assert by_name["page visits"].missing == ["http://127.0.0.1:1/v0"]


def test_focus_changes_count_in_order_and_within_the_window() -> None:
    rows = [r for r in _complete() if r.kind != "window.focus"]
    rows += [
        _window("t1", time_us=500),  # before the window: not one of the workload's
        _window("t1"),
        _window("t2", cause="title"),  # a title change is not a focus change
        _window("t1"),
    ]
    by_name = {c.name: c for c in compare(_produced(), rows, WINDOW_START)}
    assert by_name["focus changes"].missing == ["#1 t2"]


@pytest.mark.slow
def test_a_short_workload_run_records_everything() -> None:
    missing = missing_programs()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"needs {', '.join(missing)}: run scripts/system-deps.sh")
        pytest.skip(f"needs {', '.join(missing)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKIMORI_")}
    bench = ["bench", "agent", "--workload", "--seconds", "8", "--processes", "0"]
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "sekimori", *bench],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "produced vs recorded" in done.stdout
    for kind in ("process starts", "file renames", "focus changes", "page visits"):
        assert kind in done.stdout
