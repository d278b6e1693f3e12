"""Boot id, boot time and clocks, read from this machine's real /proc."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from sekimori.agent.platform.linux.power import boot_id, boot_time_us, clocks


def test_boot_id_is_this_boots_uuid() -> None:
    value = boot_id()
    assert str(uuid.UUID(value)) == value
    assert boot_id() == value


def test_boot_time_agrees_with_uptime() -> None:
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    expected = time.time() - uptime  # uptime counts suspended time, like btime
    assert abs(boot_time_us() / 1e6 - expected) < 5


def test_boot_time_needs_btime(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3 4\nintr 0\n")
    with pytest.raises(ValueError, match="no btime"):
        boot_time_us(stat)
    stat.write_text("cpu  1 2 3 4\nbtime 1736755200\n")
    assert boot_time_us(stat) == 1_736_755_200_000_000


def test_boottime_includes_monotonic() -> None:
    boottime, monotonic = clocks()
    assert boottime >= monotonic > 0
