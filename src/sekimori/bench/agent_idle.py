"""``sekimori bench agent``: the idle agent's resident memory and CPU.

A real server process and a real ``sekimori agent run`` process (enrolled for real,
default settings, so its collectors run; connected); once the agent is connected and
has settled, its RSS is sampled and its CPU time measured over ``--seconds``, and the
events it sent meanwhile are counted (collectors report what happens on the machine,
so on a busy machine the agent is not idle). The baseline, measured in
the same run and the same way, is a bare interpreter doing nothing
(``python -c "import time; time.sleep(...)"``): what any Python agent costs at least.

With ``--workload`` the same command measures the agent at work instead (every
collector on a busy desktop, and a check that no event was missed): see
:mod:`sekimori.bench.agent_workload`.

Exit status 0 when the run completed (whether or not the goals were met), 1 when it
failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from sekimori.bench._footprint import (
    CONNECT_TIMEOUT,
    MIB,
    SAMPLE_SECONDS,
    TICKS,
    Footprint,
    measure,
    wait_connected,
)
from sekimori.bench._server import (
    BenchmarkFailed,
    clean_environment,
    log_tail,
    running_server,
    stop_process,
)
from sekimori.server.store.events import count_events

__all__ = ["GOAL_CPU_PERCENT", "GOAL_RSS_MIB", "main"]

GOAL_RSS_MIB = 35.0
GOAL_CPU_PERCENT = 0.5
# Start-up work (imports, TLS handshake, the agent.started event) is not idling.
_SETTLE_SECONDS = 2.0


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
        sleep_for = seconds + _SETTLE_SECONDS + CONNECT_TIMEOUT + 30
        baseline = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({sleep_for:.0f})"],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        try:
            print("waiting for the agent to connect ...", flush=True)
            wait_connected(server, agent, log)
            time.sleep(_SETTLE_SECONDS)
            print(f"measuring for {seconds:g} s ...", flush=True)
            stored_before = count_events(server.engine)
            try:
                agent_fp, baseline_fp = measure(
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
        f"(RSS sampled every {SAMPLE_SECONDS:g} s; 1 MiB = {MIB:,} bytes)\n"
        f"  agent RSS:     max {agent.rss_max / MIB:5.1f} MiB, avg {agent.rss_avg / MIB:5.1f} MiB"
        f"   goal <= {GOAL_RSS_MIB:g} MiB: {_verdict(agent.rss_max <= GOAL_RSS_MIB * MIB)}\n"
        f"  agent CPU:     {agent.cpu_seconds:.3f} s = {agent.cpu_percent:.3f} % of one core"
        f"   goal <= {GOAL_CPU_PERCENT:g} %: {_verdict(agent.cpu_percent <= GOAL_CPU_PERCENT)}\n"
        f"                 (the kernel counts CPU time in ticks of {1000 / TICKS:g} ms)\n"
        f"  baseline (bare python sleeping): RSS max {baseline.rss_max / MIB:.1f} MiB, "
        f"avg {baseline.rss_avg / MIB:.1f} MiB, CPU {baseline.cpu_percent:.3f} %\n"
        f"  agent above the bare interpreter: {(agent.rss_max - baseline.rss_max) / MIB:+.1f} MiB\n"
        f"  events the agent's collectors sent meanwhile: {events:,}",
        flush=True,
    )


def main(args: argparse.Namespace) -> int:
    if getattr(args, "workload", False):
        from sekimori.bench import agent_workload

        return agent_workload.main(args)
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
