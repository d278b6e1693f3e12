"""``sekimori bench ingest``: events per second from agent outboxes to committed rows.

What runs, all real:

1. a ``sekimori server`` process (temporary data directory, default settings);
2. N agents enrolled with one-time tokens and the pinned CA fingerprint;
3. each agent's outbox pre-filled with its share of ``agent.log`` events (timed on
   its own: the outbox append rate);
4. one child process running the N agents' channel clients in one asyncio loop,
   timed from their start until every outbox is empty (= every event committed);
5. a count of the store's events, which must be exactly the number sent;
6. the baseline: the same rows inserted with the plain driver into a fresh table
   made by the same migrations, one commit per agent-sized chunk.

Exit status 0 when the run completed and verified (whether or not the rate goal was
met), 1 when it failed.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import psutil

from sekimori.agent.outbox import Outbox
from sekimori.bench._baseline import RawInsert, postgres_insert_rate, sqlite_insert_rate
from sekimori.bench._postgres import libpq_url, temporary_database
from sekimori.bench._server import (
    BenchmarkFailed,
    BenchServer,
    clean_environment,
    running_server,
)
from sekimori.bench._stream import StreamResult
from sekimori.bench._workload import make_events, server_rows
from sekimori.clock import now_us
from sekimori.server.store.events import EventRow, count_events
from sekimori.settings import AgentSettings, ServerSettings

__all__ = ["GOAL_EVENTS_PER_SECOND", "main"]

GOAL_EVENTS_PER_SECOND = 50_000
# Events per append_many transaction when pre-filling: a collector flushing a burst.
APPEND_CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class IngestReport:
    agents: int
    events: int
    store: str
    append_seconds: float
    stream: StreamResult
    server_cpu_seconds: float
    stored: int
    raw: RawInsert

    @property
    def e2e_rate(self) -> float:
        return self.events / self.stream.seconds


def _shares(total: int, agents: int) -> list[int]:
    base, extra = divmod(total, agents)
    return [base + (1 if i < extra else 0) for i in range(agents)]


def _prefill(
    server: BenchServer, state_dirs: list[Path], device_ids: list[str], shares: list[int]
) -> tuple[float, list[list[EventRow]]]:
    """Append each agent's events to its real outbox; returns the time spent in
    appends alone, and the rows the server should end up storing, per agent."""
    settings = AgentSettings()
    seconds = 0.0
    rows: list[list[EventRow]] = []
    for index, (state_dir, device_id, share) in enumerate(
        zip(state_dirs, device_ids, shares, strict=True)
    ):
        events = make_events(share, seed=index, os_user=f"user{index:03d}")
        outbox = Outbox(state_dir / "outbox.db", max_bytes=settings.outbox_max_bytes)
        try:
            first_seq = 0
            start = time.perf_counter()
            for at in range(0, len(events), APPEND_CHUNK):
                seqs = outbox.append_many(events[at : at + APPEND_CHUNK])
                first_seq = first_seq or seqs[0]
            seconds += time.perf_counter() - start
            queued = outbox.stats().events
        finally:
            outbox.close()
        if queued != share:
            raise BenchmarkFailed(f"outbox of agent {index} holds {queued} events, not {share}")
        rows.append(server_rows(device_id, events, first_seq, now_us()))
        server.check_alive("pre-filling the outboxes")
    return seconds, rows


def _stream(server: BenchServer, state_dirs: list[Path]) -> tuple[StreamResult, float]:
    """Run the agents' channels in one child process; returns its result and the
    server process's CPU seconds meanwhile (it is idle otherwise)."""
    server_process = psutil.Process(server.proc.pid)
    cpu_before = sum(server_process.cpu_times()[:2])
    child = subprocess.run(
        [sys.executable, "-m", "sekimori.bench._stream", *map(str, state_dirs)],
        env=clean_environment(),
        capture_output=True,
        check=False,
    )
    cpu_after = sum(server_process.cpu_times()[:2])
    server.check_alive("streaming events")
    if child.returncode != 0:
        raise BenchmarkFailed(
            f"the agents' process failed (status {child.returncode}):\n"
            f"{child.stderr.decode('utf-8', 'replace')[-4000:]}"
        )
    if child.stderr:
        # Warnings (reconnects, quarantined events) mean the figure is not clean.
        print(child.stderr.decode("utf-8", "replace"), file=sys.stderr, end="")
    result = msgspec.json.decode(child.stdout.strip().splitlines()[-1], type=StreamResult)
    return result, cpu_after - cpu_before


def _verify(server: BenchServer, device_ids: list[str], shares: list[int], sent: int) -> int:
    stored = count_events(server.engine)
    if stored != sent:
        per_device = [
            f"{d[:8]}: {count_events(server.engine, d)}/{s}"
            for d, s in zip(device_ids, shares, strict=True)
        ]
        raise BenchmarkFailed(
            f"the store holds {stored} events, expected exactly {sent} "
            f"(per device: {', '.join(per_device)})"
        )
    return stored


def _interleave(rows: list[list[EventRow]], chunk: int) -> list[list[EventRow]]:
    """Per-agent chunks taken round-robin: the order batches reach the server."""
    per_agent = [[r[i : i + chunk] for i in range(0, len(r), chunk)] for r in rows]
    out: list[list[EventRow]] = []
    for k in range(max(len(p) for p in per_agent)):
        out.extend(p[k] for p in per_agent if k < len(p))
    return out


def _run(
    workdir: Path, agents: int, total: int, e2e_url: str | None, raw_url: str | None
) -> IngestReport:
    shares = _shares(total, agents)
    state_dirs = [workdir / "agents" / f"agent-{i:03d}" for i in range(agents)]
    print("starting the server ...", flush=True)
    with running_server(workdir, e2e_url) as server:
        print(f"enrolling {agents} agents ...", flush=True)
        device_ids = server.enroll_agents(state_dirs)
        print(f"pre-filling their outboxes with {total:,} events ...", flush=True)
        append_seconds, rows = _prefill(server, state_dirs, device_ids, shares)
        print("streaming to the server ...", flush=True)
        stream, server_cpu = _stream(server, state_dirs)
        if stream.events != total:
            raise BenchmarkFailed(f"the outboxes held {stream.events} events, not {total}")
        stored = _verify(server, device_ids, shares, total)
    print("baseline: raw inserts of the same rows ...", flush=True)
    chunks = _interleave(rows, AgentSettings().batch_max_events)
    if raw_url is None:
        raw = sqlite_insert_rate(
            workdir / "raw.db", chunks, synchronous=ServerSettings().sqlite_synchronous
        )
    else:
        raw = postgres_insert_rate(raw_url, chunks)
    if raw.rows != total:
        raise BenchmarkFailed(f"the baseline table holds {raw.rows} rows, not {total}")
    store = (
        f"SQLite (WAL, synchronous={ServerSettings().sqlite_synchronous})"
        if e2e_url is None
        else "PostgreSQL"
    )
    return IngestReport(agents, total, store, append_seconds, stream, server_cpu, stored, raw)


def _print(report: IngestReport) -> None:
    s = report.stream
    raw = report.raw
    driver = "sqlite3" if report.store.startswith("SQLite") else "psycopg"
    met = "met" if report.e2e_rate >= GOAL_EVENTS_PER_SECOND else "NOT met"
    print(
        f"\nsekimori bench ingest: {report.agents} agents, {report.events:,} agent.log events, "
        f"store {report.store}\n"
        f"  outbox append ({APPEND_CHUNK:,} events/append_many): "
        f"{report.events / report.append_seconds:>10,.0f} events/s "
        f"({report.append_seconds:.2f} s)\n"
        f"  end to end (outboxes -> committed):          "
        f"{report.e2e_rate:>10,.0f} events/s ({s.seconds:.2f} s; "
        f"all connected after {s.connected_seconds:.2f} s)\n"
        f"      CPU meanwhile: server {report.server_cpu_seconds:.2f} s "
        f"({100 * report.server_cpu_seconds / s.seconds:.0f}% of a core), "
        f"agents {s.cpu_seconds:.2f} s ({100 * s.cpu_seconds / s.seconds:.0f}%)\n"
        f"  raw insert ({driver} executemany, {raw.chunk_rows:,} rows/commit): "
        f"{raw.rate:>10,.0f} rows/s ({raw.seconds:.2f} s)\n"
        f"  ratio end to end / raw: {report.e2e_rate / raw.rate:.2f}\n"
        f"  store holds {report.stored:,} events: exactly as sent\n"
        f"  goal >= {GOAL_EVENTS_PER_SECOND:,} events/s end to end: {met}",
        flush=True,
    )


def main(args: argparse.Namespace) -> int:
    agents: int = args.agents
    total: int = args.events
    url: str | None = args.database_url
    if agents < 1 or total < agents:
        print("sekimori bench ingest: need --agents >= 1 and --events >= --agents", file=sys.stderr)
        return 2
    if url:
        try:
            url = libpq_url(url)
        except ValueError as exc:
            print(
                f"sekimori bench ingest: --database-url: {exc} (SQLite is the default)",
                file=sys.stderr,
            )
            return 2
    try:
        with (
            tempfile.TemporaryDirectory(prefix="sekimori-bench-") as tmp,
            contextlib.ExitStack() as stack,
        ):
            e2e_url = raw_url = None
            if url:
                e2e_url = stack.enter_context(temporary_database(url, "e2e"))
                raw_url = stack.enter_context(temporary_database(url, "raw"))
            report = _run(Path(tmp), agents, total, e2e_url, raw_url)
    except BenchmarkFailed as exc:
        print(f"sekimori bench ingest: FAILED: {exc}", file=sys.stderr)
        return 1
    _print(report)
    return 0
