"""Measuring an agent process: its RSS and CPU time over a window, beside a baseline.

RSS (psutil) is sampled every ``SAMPLE_SECONDS``; CPU time (user + system, all
threads) is the difference of the kernel's counters over the window, which count in
ticks of ``1 / SC_CLK_TCK`` s.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from sekimori.bench._server import BenchmarkFailed, BenchServer, log_tail

__all__ = [
    "CONNECT_TIMEOUT",
    "MIB",
    "SAMPLE_SECONDS",
    "TICKS",
    "Footprint",
    "measure",
    "process_cpu",
    "wait_connected",
]

MIB = 1024 * 1024
SAMPLE_SECONDS = 0.5
CONNECT_TIMEOUT = 30.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Footprint:
    """One process over the measured window."""

    rss_max: int
    rss_avg: float
    cpu_seconds: float
    seconds: float

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_seconds / self.seconds


def process_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) the process has used so far."""
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(
    processes: list[psutil.Process],
    seconds: float,
    check: Callable[[], None] | None = None,
) -> list[Footprint]:
    """Sample the processes' RSS every half second for ``seconds``; CPU time is the
    difference of the kernel's counters over the window. ``check`` is called at every
    sample and may raise to abandon the window."""
    rss: list[list[int]] = [[] for _ in processes]
    cpu_start = [process_cpu(p) for p in processes]
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for samples, process in zip(rss, processes, strict=True):
            samples.append(process.memory_info().rss)
        if check is not None:
            check()
        now = time.perf_counter()
        if now >= deadline:
            break
        time.sleep(min(SAMPLE_SECONDS, deadline - now))
    elapsed = time.perf_counter() - start
    return [
        Footprint(max(samples), sum(samples) / len(samples), process_cpu(p) - cpu0, elapsed)
        for samples, p, cpu0 in zip(rss, processes, cpu_start, strict=True)
    ]


def wait_connected(server: BenchServer, agent: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the server reports the agent connected; fail if either dies."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        server.check_alive("waiting for the agent")
        if agent.poll() is not None:
            raise BenchmarkFailed(
                f"the agent exited with status {agent.returncode}; its log ends:\n{log_tail(log)}"
            )
        reply = server.healthz()
        if reply is not None and reply.get("agents_connected", 0) >= 1:
            return
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"the agent did not connect within {CONNECT_TIMEOUT:.0f} s")
        time.sleep(0.1)
