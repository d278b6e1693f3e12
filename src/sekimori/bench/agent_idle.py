"""``sekimori bench agent``: the idle agent's resident memory and CPU.

A real server process and a real ``sekimori agent run`` process (enrolled for real,
default settings, so its collectors run; connected); once the agent is connected and
has settled, its RSS is sampled and its CPU time measured over ``--seconds``, and the
events it sent meanwhile are counted (collectors report what happens on the machine,
so on a busy machine the agent is not idle). The baseline, measured in
the same run and the same way, is a bare interpreter doing nothing
(``python -c "import time; time.sleep(...)"``): what any Python agent costs at least.

Exit status 0 when the run completed (whether or not the goals were met), 1 when it
failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from sekimori.bench._server import (
    BenchmarkFailed,
    BenchServer,
    clean_environment,
    log_tail,
    running_server,
    stop_process,
)
from sekimori.server.store.events import count_events

__all__ = ["GOAL_CPU_PERCENT", "GOAL_RSS_MIB", "main"]

GOAL_RSS_MIB = 35.0
GOAL_CPU_PERCENT = 0.5
MIB = 1024 * 1024
# Start-up work (imports, TLS handshake, the agent.started event) is not idling.
_SETTLE_SECONDS = 2.0
_SAMPLE_SECONDS = 0.5
_CONNECT_TIMEOUT = 30.0
_TICKS = os.sysconf("SC_CLK_TCK")


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


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _measure(processes: list[psutil.Process], seconds: float) -> list[Footprint]:
    """Sample the processes' RSS every half second for ``seconds``; CPU time is the
    difference of the kernel's counters over the window."""
    rss: list[list[int]] = [[] for _ in processes]
    cpu_start = [_cpu(p) for p in processes]
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for samples, process in zip(rss, processes, strict=True):
            samples.append(process.memory_info().rss)
        now = time.perf_counter()
        if now >= deadline:
            break
        time.sleep(min(_SAMPLE_SECONDS, deadline - now))
    elapsed = time.perf_counter() - start
    return [
        Footprint(max(samples), sum(samples) / len(samples), _cpu(p) - cpu0, elapsed)
        for samples, p, cpu0 in zip(rss, processes, cpu_start, strict=True)
    ]


def _wait_connected(server: BenchServer, agent: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _CONNECT_TIMEOUT
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
            raise BenchmarkFailed(f"the agent did not connect within {_CONNECT_TIMEOUT:.0f} s")
        time.sleep(0.1)


def _run(workdir: Path, seconds: float) -> tuple[Footprint, Footprint, int]:
    print("starting the server ...", flush=True)
    with running_server(workdir) as server:
        state_dir = workdir / "agent"
        server.enroll_agents([state_dir])
        env = clean_environment()
        log = workdir / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "sekimori", "agent", "run", "--state-dir", str(state_dir)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        # Sleeps past the window; killed right after it.
        sleep_for = seconds + _SETTLE_SECONDS + _CONNECT_TIMEOUT + 30
        baseline = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({sleep_for:.0f})"],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        try:
            print("waiting for the agent to connect ...", flush=True)
            _wait_connected(server, agent, log)
            time.sleep(_SETTLE_SECONDS)
            print(f"measuring for {seconds:g} s ...", flush=True)
            stored_before = count_events(server.engine)
            try:
                agent_fp, baseline_fp = _measure(
                    [psutil.Process(agent.pid), psutil.Process(baseline.pid)], seconds
                )
            except psutil.NoSuchProcess:
                raise BenchmarkFailed(
                    f"the agent exited during the window; its log ends:\n{log_tail(log)}"
                ) from None
            # Collectors report what happens on this machine: an agent on a busy
            # machine is not idle, and the reader should know.
            events = count_events(server.engine) - stored_before
            reply = server.healthz()
            if reply is None or reply.get("agents_connected", 0) < 1:
                raise BenchmarkFailed("the agent was not connected at the end of the window")
        finally:
            baseline.kill()
            baseline.wait()
            status = stop_process(agent)
        if status != 0:
            raise BenchmarkFailed(
                f"the agent exited with status {status} on SIGTERM; its log ends:\n{log_tail(log)}"
            )
    return agent_fp, baseline_fp, events


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _print(agent: Footprint, baseline: Footprint, events: int) -> None:
    print(
        f"\nsekimori bench agent: idle, connected agent over {agent.seconds:.1f} s "
        f"(RSS sampled every {_SAMPLE_SECONDS:g} s; 1 MiB = {MIB:,} bytes)\n"
        f"  agent RSS:     max {agent.rss_max / MIB:5.1f} MiB, avg {agent.rss_avg / MIB:5.1f} MiB"
        f"   goal <= {GOAL_RSS_MIB:g} MiB: {_verdict(agent.rss_max <= GOAL_RSS_MIB * MIB)}\n"
        f"  agent CPU:     {agent.cpu_seconds:.3f} s = {agent.cpu_percent:.3f} % of one core"
        f"   goal <= {GOAL_CPU_PERCENT:g} %: {_verdict(agent.cpu_percent <= GOAL_CPU_PERCENT)}\n"
        f"                 (the kernel counts CPU time in ticks of {1000 / _TICKS:g} ms)\n"
        f"  baseline (bare python sleeping): RSS max {baseline.rss_max / MIB:.1f} MiB, "
        f"avg {baseline.rss_avg / MIB:.1f} MiB, CPU {baseline.cpu_percent:.3f} %\n"
        f"  agent above the bare interpreter: {(agent.rss_max - baseline.rss_max) / MIB:+.1f} MiB\n"
        f"  events the agent's collectors sent meanwhile: {events:,}",
        flush=True,
    )


def main(args: argparse.Namespace) -> int:
    seconds: float = args.seconds
    if seconds <= 0:
        print("sekimori bench agent: --seconds must be positive", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="sekimori-bench-") as tmp:
            agent, baseline, events = _run(Path(tmp), seconds)
    except BenchmarkFailed as exc:
        print(f"sekimori bench agent: FAILED: {exc}", file=sys.stderr)
        return 1
    _print(agent, baseline, events)
    return 0
