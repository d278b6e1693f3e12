"""``sekimori bench agent --workload``: the agent at work, and no event missed.

The issue's performance goal, measured with real programs only:

* a real server and a real ``sekimori agent run`` process (enrolled for real) with
  every collector enabled at its default settings, except where each one looks: the
  file collector watches a temporary home folder, the web collector reads that home's
  browser profiles, the window collector watches the bench's X display;
* a machine running about ``--processes`` processes (as ``ps -e`` counts them): idle
  ``sleep`` processes are added until there are that many;
* over the measured window, a scripted workload (see ``Workload``): short-lived
  processes (a few per second), file creations, writes, renames and deletions in the
  watched home, focus changes between real xterm windows on Xvfb + openbox, and page
  visits in a real (headless) Chromium whose profile is in that home;
* the agent's RSS and CPU over the window, beside a bare interpreter's (the baseline);
* then the bench waits for the agent to deliver and checks, in the server's store,
  that every event the workload produced was recorded: each spawned process's start
  (by its command line) and stop (by pid), each file operation (by path), each focus
  change (by xterm title, in order) and each page visit (by URL).

Exit status 0 when the run completed and every produced event was recorded (whether
or not the CPU and RSS goals were met is in the output), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psutil

from sekimori.bench._desktop import Chromium, Desktop, Pages, missing_programs, running_desktop
from sekimori.bench._footprint import (
    MIB,
    SAMPLE_SECONDS,
    TICKS,
    Footprint,
    measure,
    process_cpu,
    wait_connected,
)
from sekimori.bench._server import (
    BenchmarkFailed,
    BenchServer,
    clean_environment,
    log_tail,
    running_server,
    stop_process,
)
from sekimori.bench._workload_check import (
    Check,
    Produced,
    Row,
    background_starts,
    chromium_history,
    collector_health,
    compare,
    kinds_between,
    stored,
)
from sekimori.clock import now_us

__all__ = [
    "GOAL_CPU_PERCENT",
    "GOAL_RSS_MIB",
    "Check",
    "Produced",
    "Row",
    "Workload",
    "compare",
    "main",
]

GOAL_RSS_MIB = 40.0
GOAL_CPU_PERCENT = 1.0

# The workload's pace (seconds between two actions of a kind).
CHURN_PERIOD = 1 / 3  # three short-lived processes per second
CHURN_LIFETIMES = (0.02, 0.1, 0.3, 0.6)  # seconds; taken in turn
FILE_PERIOD = 1.0  # one create + write + rename + delete cycle per second
FOCUS_PERIOD = 2.0
VISIT_PERIOD = 4.0
XTERMS = 4

CHURN_TAG = "sekimori-bench-churn"
_SLEEPER_SECONDS = 900  # idle sleepers end by themselves even if the bench is killed
# After the agent connected: its start-up work (inventory, the process snapshot and
# its hashes, the first history read) is over once it used at most _QUIET_CPU
# seconds of CPU in each of _QUIET_SECONDS consecutive seconds.
_SETTLE_MIN = 3.0
_SETTLE_MAX = 30.0
_QUIET_SECONDS = 3
_QUIET_CPU = 0.02
# How long the agent may take, after the window, to deliver what it saw (the web
# collector reads histories every 10 s, the file collector holds writes 2 s).
_DELIVERY_TIMEOUT = 60.0
_STOPPED_CHURN_WAIT = 5.0


# ---- what the workload does ------------------------------------------------------------


class Workload:
    """The scripted user, in a thread of the bench process: ``start()``, ``stop()``.

    Every ``CHURN_PERIOD`` a ``sleep`` process whose argv[0] is a unique tag, living
    ``CHURN_LIFETIMES`` in turn; every ``FILE_PERIOD`` one file created and written,
    one existing file appended to, the file created in the previous cycle renamed and
    the one renamed in the cycle before deleted; every ``FOCUS_PERIOD`` the next
    xterm activated through the window manager; every ``VISIT_PERIOD`` a new page
    opened in a new Chromium tab (the previous tab is closed).
    """

    def __init__(
        self,
        *,
        desktop: Desktop,
        xterms: list[tuple[int, str]],
        chromium: Chromium,
        pages: Pages,
        folder: Path,
        to_modify: list[Path],
    ) -> None:
        self.produced = Produced()
        self.error: BaseException | None = None
        self._desktop = desktop
        self._xterms = xterms
        self._chromium = chromium
        self._pages = pages
        self._folder = folder
        self._to_modify = to_modify
        self._sleep = shutil.which("sleep") or "/bin/sleep"
        self._children: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-workload", daemon=True)
        self._counters = {"churn": 0, "files": 0, "focus": 0, "visit": 0}
        self._tab: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop acting; wait for the last short-lived processes to end."""
        self._stop.set()
        self._thread.join(30)
        deadline = time.monotonic() + _STOPPED_CHURN_WAIT
        for child in self._children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()

    def check(self) -> None:
        """Raise if the workload failed (called at every sample of the window)."""
        if self.error is not None:
            raise BenchmarkFailed(f"the workload failed: {self.error}")

    def _run(self) -> None:
        start = time.monotonic()
        tasks = [
            (CHURN_PERIOD, self._churn),
            (FILE_PERIOD, self._files),
            (FOCUS_PERIOD, self._focus),
            (VISIT_PERIOD, self._visit),
        ]
        # Staggered so that the kinds do not all fall on the same instant.
        due = [start + n * 0.1 for n in range(len(tasks))]
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                for n, (period, action) in enumerate(tasks):
                    if now >= due[n]:
                        action()
                        due[n] += period
                        if due[n] < now:  # fell behind (a slow action): do not burst
                            due[n] = now + period
                self._children = [c for c in self._children if c.poll() is None]
                self._stop.wait(max(0.0, min(due) - time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by check()
            self.error = exc

    def _churn(self) -> None:
        n = self._counters["churn"]
        self._counters["churn"] += 1
        tag = f"{CHURN_TAG}-{n}"
        lifetime = CHURN_LIFETIMES[n % len(CHURN_LIFETIMES)]
        # argv[0] is the tag: /proc/<pid>/cmdline (what the agent reports) names it.
        child = subprocess.Popen(
            [tag, f"{lifetime:g}"],
            executable=self._sleep,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._children.append(child)
        self.produced.spawned.append((tag, child.pid))

    def _files(self) -> None:
        n = self._counters["files"]
        self._counters["files"] += 1
        produced = self.produced
        new = self._folder / f"report-{n:04d}.txt"
        new.write_text(f"report {n}\n" * 50)
        produced.created.append(str(new))
        if n < len(self._to_modify):
            with self._to_modify[n].open("a") as f:
                f.write(f"appended in cycle {n}\n")
            produced.modified.append(str(self._to_modify[n]))
        if n >= 1:
            src = self._folder / f"report-{n - 1:04d}.txt"
            dest = self._folder / f"final-{n - 1:04d}.txt"
            src.rename(dest)
            produced.moved.append((str(src), str(dest)))
        if n >= 2:
            gone = self._folder / f"final-{n - 2:04d}.txt"
            gone.unlink()
            produced.deleted.append(str(gone))

    def _focus(self) -> None:
        n = self._counters["focus"]
        self._counters["focus"] += 1
        window, title = self._xterms[n % len(self._xterms)]
        if not self._desktop.activate(window):
            raise BenchmarkFailed(f"the window manager did not focus {title!r}")
        self.produced.focused.append(title)

    def _visit(self) -> None:
        n = self._counters["visit"]
        self._counters["visit"] += 1
        url = self._pages.url(f"visit-{n}")
        previous, self._tab = self._tab, self._chromium.open(url)
        self.produced.visited.append(url)
        if previous is not None:
            self._chromium.close_tab(previous)


# ---- what the store holds ---------------------------------------------------------------


@dataclass
class Result:
    agent: Footprint
    baseline: Footprint
    settle_seconds: float
    settled: bool
    processes_start: int
    processes_end: int
    sleepers: int
    checks: list[Check]
    health: dict[str, tuple[str, str]]
    kinds: Counter[str]
    delivery_seconds: float
    not_in_history: list[str]
    background: Counter[str]
    agent_log: str

    @property
    def missing(self) -> int:
        return sum(len(check.missing) for check in self.checks)


@contextlib.contextmanager
def _sleepers(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` idle ``sleep`` processes, killed on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    sleep = shutil.which("sleep") or "/bin/sleep"
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sleep, str(_SLEEPER_SECONDS)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def _settle(agent: psutil.Process, agent_proc: subprocess.Popen[bytes]) -> tuple[float, bool]:
    """Wait for the agent's start-up work to end; returns (seconds waited, settled)."""
    start = time.monotonic()
    quiet = 0
    before = process_cpu(agent)
    while True:
        time.sleep(1.0)
        if agent_proc.poll() is not None:
            raise BenchmarkFailed(f"the agent exited with status {agent_proc.returncode}")
        used = process_cpu(agent)
        quiet = quiet + 1 if used - before <= _QUIET_CPU else 0
        before = used
        waited = time.monotonic() - start
        if quiet >= _QUIET_SECONDS and waited >= _SETTLE_MIN:
            return waited, True
        if waited >= _SETTLE_MAX:
            return waited, False


def _agent_env(home: Path, desktop: Desktop) -> dict[str, str]:
    env = {
        k: v
        for k, v in clean_environment().items()
        if k not in ("DISPLAY", "XAUTHORITY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")
    }
    env.update(
        SEKIMORI_AGENT__COLLECTORS__FILES__PATHS=json.dumps([str(home)]),
        SEKIMORI_AGENT__COLLECTORS__WEB__HOMES=json.dumps([str(home)]),
        SEKIMORI_AGENT__COLLECTORS__WINDOW__DISPLAY=desktop.display,
        SEKIMORI_AGENT__COLLECTORS__WINDOW__XAUTHORITY=str(desktop.xauthority),
    )
    return env


def _wait_delivered(
    server: BenchServer, device_id: str, produced: Produced, start_us: int
) -> tuple[list[Check], float]:
    """Poll the store until every produced event is there, or the timeout."""
    began = time.monotonic()
    while True:
        server.check_alive("waiting for the agent's events")
        checks = compare(produced, stored(server.engine, device_id, start_us), start_us)
        waited = time.monotonic() - began
        if not any(check.missing for check in checks) or waited > _DELIVERY_TIMEOUT:
            return checks, waited
        time.sleep(0.5)


def _run(workdir: Path, seconds: float, target_processes: int) -> Result:
    with ExitStack() as stack:
        print("starting the server ...", flush=True)
        server = stack.enter_context(running_server(workdir))
        state_dir = workdir / "agent"
        (device_id,) = server.enroll_agents([state_dir])

        # The user's home: what the file collector watches, where Chromium keeps its profile.
        home = workdir / "home" / "bench"
        folder = home / "Documents"
        folder.mkdir(parents=True)
        to_modify = [folder / f"notes-{n:04d}.txt" for n in range(int(seconds / FILE_PERIOD) + 5)]
        for path in to_modify:
            path.write_text("notes\n")

        print("starting Xvfb, openbox, xterms and Chromium ...", flush=True)
        desktop = stack.enter_context(running_desktop(workdir / "desktop"))
        xterms = [(desktop.xterm(f"bench-term-{n}"), f"bench-term-{n}") for n in range(XTERMS)]
        pages = Pages()
        stack.callback(pages.close)
        browser_env = dict(desktop.env, HOME=str(home))
        chromium = Chromium(home / ".config" / "chromium", pages.url("start"), browser_env)
        stack.callback(chromium.close)
        chromium.wait_for_title(Pages.title("start"))

        # The agent and the baseline are two more processes.
        to_add = max(0, target_processes - len(psutil.pids()) - 2)
        print(f"starting {to_add} idle sleep processes ...", flush=True)
        stack.enter_context(_sleepers(to_add))

        env = _agent_env(home, desktop)
        log = workdir / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "sekimori", "agent", "run", "--state-dir", str(state_dir)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        agent_status: list[int] = []
        stack.callback(lambda: agent_status.append(stop_process(agent)))
        baseline = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(3600)"],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        stack.callback(stop_process, baseline)
        agent_ps, baseline_ps = psutil.Process(agent.pid), psutil.Process(baseline.pid)

        print("waiting for the agent to connect and settle ...", flush=True)
        wait_connected(server, agent, log)
        settle_seconds, settled = _settle(agent_ps, agent)

        workload = Workload(
            desktop=desktop,
            xterms=xterms,
            chromium=chromium,
            pages=pages,
            folder=folder,
            to_modify=to_modify,
        )
        processes_start = len(psutil.pids())
        print(
            f"measuring for {seconds:g} s under the workload ({processes_start} processes) ...",
            flush=True,
        )
        start_us = now_us()
        workload.start()
        try:
            agent_fp, baseline_fp = measure([agent_ps, baseline_ps], seconds, workload.check)
        except psutil.NoSuchProcess:
            raise BenchmarkFailed(
                f"the agent exited during the window; its log ends:\n{log_tail(log)}"
            ) from None
        finally:
            workload.stop()
        end_us = now_us()
        processes_end = len(psutil.pids())
        workload.check()

        # Quitting writes the visits Chromium still held (it commits about every 10 s).
        chromium.close()
        recorded_by_chromium = chromium_history(
            home / ".config" / "chromium" / "Default" / "History"
        )
        not_in_history = [
            url for url in workload.produced.visited if url not in recorded_by_chromium
        ]
        # A visit Chromium itself did not record was not produced.
        workload.produced.visited = [
            u for u in workload.produced.visited if u not in not_in_history
        ]

        print("waiting for the agent to deliver what it saw ...", flush=True)
        checks, delivery = _wait_delivered(server, device_id, workload.produced, start_us)
        health = collector_health(server.engine, device_id)
        background = background_starts(
            stored(server.engine, device_id, start_us), workload.produced, end_us
        )
        kinds = kinds_between(server.engine, device_id, start_us, end_us)
        if server.healthz() is None:
            raise BenchmarkFailed("the server stopped answering")
        stack.close()  # stops the agent (and everything else) now, to check its status
        agent_log = log_tail(log)
        if agent_status and agent_status[0] != 0:
            raise BenchmarkFailed(
                f"the agent exited with status {agent_status[0]} on SIGTERM; "
                f"its log ends:\n{log_tail(log)}"
            )
    return Result(
        agent=agent_fp,
        baseline=baseline_fp,
        settle_seconds=settle_seconds,
        settled=settled,
        processes_start=processes_start,
        processes_end=processes_end,
        sleepers=to_add,
        checks=checks,
        health=health,
        kinds=kinds,
        delivery_seconds=delivery,
        not_in_history=not_in_history,
        background=background,
        agent_log=agent_log,
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _print(result: Result, seconds: float) -> None:
    agent, baseline = result.agent, result.baseline
    lines = [
        "",
        f"sekimori bench agent --workload: every collector, scripted workload over "
        f"{agent.seconds:.1f} s (RSS sampled every {SAMPLE_SECONDS:g} s; 1 MiB = {MIB:,} bytes)",
        f"  machine: {result.processes_start} processes at the window's start, "
        f"{result.processes_end} at its end ({result.sleepers} idle sleep processes added)",
        f"  agent settled {result.settle_seconds:.0f} s after connecting"
        + ("" if result.settled else " (NOT quiet: the window started at the time limit)"),
        f"  agent RSS:     max {agent.rss_max / MIB:5.1f} MiB, avg {agent.rss_avg / MIB:5.1f} MiB"
        f"   goal <= {GOAL_RSS_MIB:g} MiB: {_verdict(agent.rss_max <= GOAL_RSS_MIB * MIB)}",
        f"  agent CPU:     {agent.cpu_seconds:.2f} s = {agent.cpu_percent:.2f} % of one core"
        f"   goal <= {GOAL_CPU_PERCENT:g} %: {_verdict(agent.cpu_percent <= GOAL_CPU_PERCENT)}",
        f"                 (the kernel counts CPU time in ticks of {1000 / TICKS:g} ms)",
        f"  baseline (bare python sleeping): RSS max {baseline.rss_max / MIB:.1f} MiB, "
        f"avg {baseline.rss_avg / MIB:.1f} MiB, CPU {baseline.cpu_percent:.3f} %",
        f"  agent above the bare interpreter: {(agent.rss_max - baseline.rss_max) / MIB:+.1f} MiB",
        f"  produced vs recorded (all delivered {result.delivery_seconds:.1f} s after the window)"
        if not result.missing
        else f"  produced vs recorded (gave up waiting {result.delivery_seconds:.0f} s "
        "after the window)",
    ]
    for check in result.checks:
        extra = f"   (+{check.extra} other events of the kind)" if check.extra else ""
        flag = "" if not check.missing else f"   MISSING {len(check.missing)}"
        lines.append(f"    {check.name:<16} {check.produced:5d} {check.recorded:5d}{flag}{extra}")
    if result.not_in_history:
        lines.append(
            f"    ({len(result.not_in_history)} tab(s) opened that Chromium did not record as "
            "visits: not counted)"
        )
    lines.append(
        "  collectors: "
        + ", ".join(
            f"{name} {status}" + (f" ({reason})" if reason and status != "running" else "")
            for name, (status, reason) in sorted(result.health.items())
        )
    )
    other = result.background
    lines.append(
        f"  other process starts in the window (not the churn's): {sum(other.values())} ("
        + ", ".join(f"{name} {count}" for name, count in other.most_common(8))
        + (", ..." if len(other) > 8 else "")
        + ")"
    )
    total = sum(result.kinds.values())
    lines.append(
        f"  events stored with times in the window: {total:,} ("
        + ", ".join(f"{kind} {count}" for kind, count in result.kinds.most_common())
        + ")"
    )
    print("\n".join(lines), flush=True)
    for check in result.checks:
        for item in itertools.islice(check.missing, 10):
            print(f"  missing {check.name}: {item}", file=sys.stderr)


class _Terminated(BenchmarkFailed):
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated("terminated by SIGTERM")


def main(args: argparse.Namespace) -> int:
    seconds: float = args.seconds
    target: int = args.processes
    if seconds <= 0:
        print("sekimori bench agent: --seconds must be positive", file=sys.stderr)
        return 2
    missing = missing_programs()
    if missing:
        print(
            "sekimori bench agent --workload: FAILED: needs programs that are not installed: "
            + ", ".join(missing)
            + " (the Debian packages are in parentheses)",
            file=sys.stderr,
        )
        return 1
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="sekimori-bench-") as tmp:
            result = _run(Path(tmp), seconds, target)
    except BenchmarkFailed as exc:
        print(f"sekimori bench agent --workload: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print(result, seconds)
    if result.missing:
        print(f"the agent's log ends:\n{result.agent_log}", file=sys.stderr)
        print(
            f"sekimori bench agent --workload: FAILED: {result.missing} produced event(s) "
            "were not recorded",
            file=sys.stderr,
        )
        return 1
    return 0
