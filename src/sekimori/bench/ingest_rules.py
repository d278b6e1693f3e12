"""``sekimori bench ingest --rules``: ingest throughput with the alert rules on, against
the same run with no rules.

Issue 5's figure: with the built-in pack plus 100 extra rules enabled, end-to-end
ingest must keep at least 70 % of the throughput with no rules. Both halves run here,
one after the other, on the same machine and the same events:

1. a real server with a fresh store, and N real enrolled agents (as ``bench ingest``);
2. the store's rule configuration set through the same functions the console uses:
   *no rules* — every built-in rule switched off; *rules* — the built-in pack on, its
   lists filled (1,000 blocked domains, 200 banned packages, 3 address ranges), and
   100 generated rules saved as one custom source (equals, contains, regex, in-list,
   CIDR, numeric and ``not`` conditions over web, process, file, window, network and
   logon events);
3. each agent's outbox pre-filled with a realistic mix of typed events (web visits,
   process starts, file changes and deletions, window focus, network connections,
   logons, USB), about 2 % of them meeting a generated rule and file deletions dense
   enough to fire the mass-deletion threshold rule;
4. the agents stream to the server (a child process, as in ``bench ingest``), timed
   until every outbox is empty (every event committed with its alerts), and the
   store's events counted: exactly what was sent.

Each half runs twice, alternated (no rules, rules, no rules, rules), and the best run
of each counts. The ratio rules / no rules is the figure; absolute rates drift with
the machine.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from sekimori.agent.outbox import Outbox, PendingEvent
from sekimori.bench._server import BenchmarkFailed, BenchServer, running_server
from sekimori.bench.ingest import APPEND_CHUNK, _shares, _stream, _verify
from sekimori.clock import now_us
from sekimori.server.rules import load_builtin_rules
from sekimori.server.rules._bench import bench_lists, generated_rules_source, sample_payload
from sekimori.server.store.rule_config import save_custom_rules, save_rule_list, set_rule_enabled
from sekimori.server.store.schema import alerts
from sekimori.settings import AgentSettings

__all__ = ["GOAL_RATIO", "run_rules_bench"]

GOAL_RATIO = 0.70
EXTRA_RULES = 100
ROUNDS = 2


@dataclass(frozen=True, slots=True)
class _Half:
    rules: int
    rate: float
    seconds: float
    server_cpu_seconds: float
    alerts: int


def mixed_events(count: int, *, seed: int, os_user: str) -> list[PendingEvent]:
    """``count`` typed events of every common kind, with increasing timestamps."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not a secret
    start = now_us()
    events = []
    for i in range(count):
        kind, payload = sample_payload(rng.random(), i, rng)
        events.append(PendingEvent(kind, payload, os_user, start + i * 50))
    return events


def _configure(engine: sa.Engine, with_rules: bool) -> int:
    """Set the store's rules as an administrator would; returns how many are on."""
    now = now_us()
    builtin = load_builtin_rules()
    with engine.begin() as conn:
        if not with_rules:
            for rule in builtin:
                set_rule_enabled(conn, rule.id, False, actor="bench", now_us=now)
            return 0
        for name, entries in bench_lists().items():
            save_rule_list(conn, name, entries, actor="bench", now_us=now)
        save_custom_rules(
            conn,
            "bench",
            "yaml",
            generated_rules_source(EXTRA_RULES),
            actor="bench",
            now_us=now,
        )
    return sum(1 for r in builtin if r.enabled) + EXTRA_RULES


def _prefill(state_dirs: list[Path], shares: list[int]) -> None:
    settings = AgentSettings()
    for index, (state_dir, share) in enumerate(zip(state_dirs, shares, strict=True)):
        events = mixed_events(share, seed=index, os_user=f"user{index:03d}")
        outbox = Outbox(state_dir / "outbox.db", max_bytes=settings.outbox_max_bytes)
        try:
            for at in range(0, len(events), APPEND_CHUNK):
                outbox.append_many(events[at : at + APPEND_CHUNK])
            queued = outbox.stats().events
        finally:
            outbox.close()
        if queued != share:
            raise BenchmarkFailed(f"outbox of agent {index} holds {queued} events, not {share}")


def _half(workdir: Path, agents: int, total: int, with_rules: bool) -> _Half:
    shares = _shares(total, agents)
    state_dirs = [workdir / "agents" / f"agent-{i:03d}" for i in range(agents)]
    label = "with rules" if with_rules else "no rules"
    workdir.mkdir(parents=True)
    print(f"[{label}] starting the server and enrolling {agents} agents ...", flush=True)
    with running_server(workdir) as server:
        device_ids = server.enroll_agents(state_dirs)
        rules = _configure(server.engine, with_rules)
        print(f"[{label}] pre-filling the outboxes with {total:,} events ...", flush=True)
        _prefill(state_dirs, shares)
        print(f"[{label}] streaming ...", flush=True)
        stream, cpu = _stream(server, state_dirs)
        if stream.events != total:
            raise BenchmarkFailed(f"the outboxes held {stream.events} events, not {total}")
        _verify(server, device_ids, shares, total)
        opened = _alert_count(server)
    return _Half(rules, total / stream.seconds, stream.seconds, cpu, opened)


def _alert_count(server: BenchServer) -> int:
    with server.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one())


def run_rules_bench(agents: int, total: int) -> int:
    """Run both halves and print the figure; returns the exit status."""
    try:
        with tempfile.TemporaryDirectory(prefix="sekimori-bench-rules-") as tmp:
            started = time.monotonic()
            nones: list[_Half] = []
            fulls: list[_Half] = []
            # Alternated, best of each: a burst of load from elsewhere on a noisy
            # machine then spoils one round, not the figure.
            for round_ in range(ROUNDS):
                nones.append(_half(Path(tmp) / f"none{round_}", agents, total, False))
                fulls.append(_half(Path(tmp) / f"rules{round_}", agents, total, True))
            none = max(nones, key=lambda h: h.rate)
            full = max(fulls, key=lambda h: h.rate)
    except BenchmarkFailed as exc:
        print(f"sekimori bench ingest --rules: FAILED: {exc}")
        return 1
    ratio = full.rate / none.rate
    met = "met" if ratio >= GOAL_RATIO else "NOT met"
    print(
        f"\nsekimori bench ingest --rules: {agents} agents, {total:,} mixed events per run "
        f"(SQLite), best of {ROUNDS} alternated runs each, "
        f"{time.monotonic() - started:.0f} s in all\n"
        f"  no rules:                 {none.rate:>10,.0f} events/s ({none.seconds:.2f} s, "
        f"server CPU {none.server_cpu_seconds:.2f} s), alerts {none.alerts}\n"
        f"  built-in pack + {EXTRA_RULES} rules: {full.rate:>10,.0f} events/s "
        f"({full.seconds:.2f} s, server CPU {full.server_cpu_seconds:.2f} s, "
        f"{full.rules} rules on), alerts {full.alerts}\n"
        f"  ratio rules / no rules: {ratio:.2f} (goal >= {GOAL_RATIO:.2f}: {met})",
        flush=True,
    )
    if any(h.alerts for h in nones) or not all(h.alerts for h in fulls):
        print("  FAILED: the no-rules half raised alerts, or the rules half raised none")
        return 1
    return 0
