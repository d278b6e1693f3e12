"""``sekimori bench console``: the web console's server time per page on a large store.

What runs, all real:

1. a store made by the real migrations and filled with the plain sqlite3 driver
   (:mod:`._fleet_load`): 20 device groups, ``--devices`` PCs and ``--events`` events
   over the last 30 days, every payload a real struct of sekimori.protocol.events
   encoded as ingest encodes it, with ``tag``/``subject`` from ingest's own
   ``event_fields``. With ``--keep DIR`` the store is kept there (one per
   devices/events pair) and reused by later runs;
2. a ``sekimori server`` process on that data directory (loopback, default settings),
   with a benchmark administrator (every group) and an operator limited to one group;
3. both log in over HTTP as a browser does; each page is requested twice to warm up,
   then ``--repeat`` times, the pages taking turns so that noise from other work on
   the machine spreads over all of them. The server's own time per request is read
   from its ``Server-Timing: app;dur=`` header;
4. the baseline, measured in the same run: the round trip of the same HTTP client to
   ``/healthz`` (no session, no page), and a raw ``SELECT count(*) FROM events`` with
   the plain sqlite3 driver on the same file.

The store must hold exactly the devices and events asked for, or the run fails.
Exit status 0 when the run completed (whether or not each page met the goal), 1 when
it failed: the store was wrong, the server did not start, a page answered with an
error. A page that does not exist (404) is reported as missing.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

from sekimori.bench._console_client import ConsoleSession, Timed
from sekimori.bench._console_store import (
    FleetStore,
    Probe,
    prepare_store,
    refresh_online,
    store_counts,
    store_directory,
)
from sekimori.bench._fleet_catalog import SEARCH_FRAGMENT
from sekimori.bench._server import BenchmarkFailed, BenchServer, running_server
from sekimori.clock import now_us
from sekimori.server.alerting.state_rules import JOB_NAME as STATE_RULES_JOB
from sekimori.server.store.schema import jobs
from sekimori.server.store.users import UserNotFound, create_user, get_user_by_name

__all__ = ["GOAL_P95_MS", "ConsoleReport", "PageResult", "main", "run"]

GOAL_P95_MS = 200.0
WARMUPS = 2
# A page stops being repeated once its samples add up to this (and it has at least
# MIN_SAMPLES): a page taking seconds would otherwise hold the run for many minutes.
PAGE_BUDGET_MS = 60_000.0
MIN_SAMPLES = 5
DEFAULTS = {"devices": 20_000, "events": 10_000_000, "repeat": 20}
ADMIN = "bench-admin"
OPERATOR = "bench-operator"
_PASSWORD = "bench console password"  # noqa: S105 - a throwaway loopback server's
_PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    path: str
    user: str = ADMIN


@dataclass(slots=True)
class PageResult:
    page: Page
    # "ok", "missing" (404) or "error <status>"
    status: str = "ok"
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)

    def p(self, q: float, client: bool = False) -> float:
        """The q-th percentile (nearest rank) of the server (or client) times."""
        values = sorted(self.client_ms if client else self.server_ms)
        return values[max(0, math.ceil(q / 100 * len(values)) - 1)] if values else math.nan

    @property
    def meets_goal(self) -> bool:
        return self.status == "ok" and self.p(95) <= GOAL_P95_MS


@dataclass(frozen=True, slots=True)
class ConsoleReport:
    store: FleetStore
    devices: int
    events: int
    count_ms: float
    healthz: PageResult
    pages: list[PageResult]
    repeat: int


def pages(probe: Probe, devices: int) -> list[Page]:
    """Every timed page: the URL contract of the console (docs/console.md)."""
    deep = max(1, math.ceil(devices / _PAGE_SIZE) * 3 // 4)
    device = f"/devices/{probe.device_id}"

    def q(path: str, **params: str) -> str:
        return f"{path}?{urlencode(params)}"

    return [
        Page("dashboard", "/"),
        Page("devices", "/devices"),
        Page("devices search", q("/devices", q=probe.hostname_query)),
        Page("devices filter+sort", q("/devices", status="offline", sort="-last_seen")),
        Page(f"devices page {deep}", q("/devices", page=str(deep))),
        Page("devices (operator, 1 group)", "/devices", OPERATOR),
        Page("device overview", q(device, tab="overview")),
        Page("device software", q(device, tab="software")),
        Page("device activity", q(device, tab="activity")),
        Page("logs 24h", "/logs"),
        Page("logs kind=web.visit", q("/logs", kind="web.visit")),
        Page("logs text (URL)", q("/logs", q=SEARCH_FRAGMENT)),
        Page("logs user 7d", q("/logs", user=probe.user, since="7d")),
        Page("logs device 30d", q("/logs", device=probe.hostname, since="30d")),
        *(
            Page(f"report {name} 7d", q(f"/reports/{name}", since="7d"))
            for name in ("web", "apps", "logons", "removable", "usb")
        ),
        Page("alerts", "/alerts"),
        Page("alerts of one device", q("/alerts", device=probe.hostname, status="all")),
        Page("alerts (operator, 1 group)", "/alerts", OPERATOR),
        Page("vulnerabilities", "/vulnerabilities"),
        Page("vulnerabilities known exploited", q("/vulnerabilities", kev="1")),
        Page("vulnerabilities (operator, 1 group)", "/vulnerabilities", OPERATOR),
        Page("vulnerability compliance 30d", "/vulnerabilities/compliance"),
        Page("device vulnerabilities", q(device, tab="vulnerabilities")),
    ]


def _state_rules_ran(server: BenchServer) -> bool:
    with server.engine.connect() as conn:
        last = conn.execute(
            sa.select(jobs.c.last_run_us).where(jobs.c.name == STATE_RULES_JOB)
        ).scalar_one_or_none()
    return last is not None


def _add_users(server: BenchServer, group: str) -> None:
    """The benchmark's administrator (every group) and group-limited operator; kept
    stores already have them."""
    for name, role, groups in ((ADMIN, "administrator", []), (OPERATOR, "operator", [group])):
        try:
            get_user_by_name(server.engine, name)
        except UserNotFound:
            create_user(server.engine, name, _PASSWORD, role, groups_=groups)  # type: ignore[arg-type]


def _measure(
    sessions: dict[str, ConsoleSession], todo: list[Page], repeat: int, log: Callable[[str], None]
) -> list[PageResult]:
    results = [PageResult(page) for page in todo]
    for result in results:
        session = sessions[result.page.user]
        for _ in range(WARMUPS):
            first = session.time(result.page.path)
            if first.status == 404:
                result.status = "missing"
                break
            if first.status != 200:
                result.status = f"error {first.status}"
                break
            if first.server_ms is None:
                raise BenchmarkFailed(f"{result.page.path}: no Server-Timing header")
    live = [r for r in results if r.status == "ok"]
    log(f"timing {len(live)} pages x {repeat} (after {WARMUPS} warm-ups each) ...")
    for _ in range(repeat):
        for result in live:
            # A page far off the goal has shown it after a few samples: stop
            # repeating it once it has used its time budget.
            if result.status != "ok" or (
                len(result.server_ms) >= MIN_SAMPLES and sum(result.server_ms) > PAGE_BUDGET_MS
            ):
                continue
            timed = sessions[result.page.user].time(result.page.path)
            if timed.status != 200 or timed.server_ms is None:
                result.status = f"error {timed.status}"
                continue
            result.server_ms.append(timed.server_ms)
            result.client_ms.append(timed.client_ms)
    return results


def _healthz(port: int, repeat: int) -> PageResult:
    result = PageResult(Page("/healthz (baseline)", "/healthz"))
    session = ConsoleSession(port)
    try:
        for n in range(WARMUPS + repeat):
            timed: Timed = session.time("/healthz")
            if timed.status != 200:
                raise BenchmarkFailed(f"/healthz answered {timed.status}")
            if n >= WARMUPS:
                result.client_ms.append(timed.client_ms)
                if timed.server_ms is not None:
                    result.server_ms.append(timed.server_ms)
    finally:
        session.close()
    return result


def run(
    workdir: Path,
    *,
    devices: int,
    events: int,
    repeat: int,
    log: Callable[[str], None] = print,
) -> ConsoleReport:
    """Generate (or reuse) the store in ``workdir``, start the server on it and time
    every page. Raises BenchmarkFailed."""
    directory = store_directory(workdir, devices, events)
    if (directory / "fleet.json").exists():
        log(f"reusing the store in {directory}")
    else:
        log(f"generating {devices:,} devices and {events:,} events in {directory} ...")
    store = prepare_store(directory, devices=devices, events=events, log=log)
    if not store.reused:
        log(
            f"  loaded {store.events:,} events in {store.insert_seconds:.1f} s "
            f"({store.load_rate:,.0f} events/s), indexes in {store.index_seconds:.1f} s"
        )
    counted_devices, counted_events, count_ms = store_counts(store.database)
    if (counted_devices, counted_events) != (devices, events):
        raise BenchmarkFailed(
            f"the store holds {counted_devices:,} devices and {counted_events:,} events, "
            f"not {devices:,} and {events:,}"
        )
    refresh_online(store.database)
    log("starting the server ...")
    with running_server(directory) as server:
        _add_users(server, store.probe.group)
        # The server checks the state rules at start: on a new store that raises an
        # "agent offline" alert for every long-silent device at once (thousands here).
        # Time the pages after that one-off burst, as a running console sees them.
        log("waiting for the server's first state-rule check ...")
        server.wait_until(
            "the first state-rule check", lambda _reply: _state_rules_ran(server), 300
        )
        healthz = _healthz(server.console_port, repeat)
        sessions = {name: ConsoleSession(server.console_port) for name in (ADMIN, OPERATOR)}
        try:
            for name, session in sessions.items():
                session.login(name, _PASSWORD)
            results = _measure(sessions, pages(store.probe, devices), repeat, log)
        finally:
            for session in sessions.values():
                session.close()
        server.check_alive("timing the pages")
    return ConsoleReport(store, counted_devices, counted_events, count_ms, healthz, results, repeat)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def print_report(report: ConsoleReport) -> None:
    store = report.store
    age_h = (now_us() - store.generated_us) / 3.6e9
    print(
        f"\nsekimori bench console: {report.devices:,} devices, {report.events:,} events "
        f"(30 days), SQLite; up to {report.repeat} timed requests per page (n) after "
        f"{WARMUPS} warm-ups; server time from Server-Timing (ms)"
    )
    if store.reused:
        print(f"  store reused, generated {age_h:.1f} h ago")
    else:
        print(
            f"  store generated: {store.load_rate:,.0f} events/s "
            f"({store.insert_seconds:.1f} s) + indexes {store.index_seconds:.1f} s"
        )
    width = max(len(r.page.name) for r in report.pages) + 2
    print(
        f"\n  {'page':<{width}}{'status':<10}{'n':>4}{'p50':>9}{'p95':>9}{'max':>9}"
        f"{'client p50':>12}   goal p95 <= {GOAL_P95_MS:.0f}"
    )
    for r in report.pages:
        verdict = "PASS" if r.meets_goal else ("FAIL" if r.status == "ok" else r.status.upper())
        print(
            f"  {r.page.name:<{width}}{r.status:<10}{len(r.server_ms):>4}"
            f"{_ms(r.p(50)):>9}{_ms(r.p(95)):>9}"
            f"{_ms(max(r.server_ms, default=math.nan)):>9}{_ms(r.p(50, client=True)):>12}"
            f"   {verdict}"
        )
    h = report.healthz
    server = f"server p50 {_ms(h.p(50))} ms, " if h.server_ms else ""
    print(
        f"\n  baseline: GET /healthz round trip p50 {_ms(h.p(50, client=True))} ms, "
        f"p95 {_ms(h.p(95, client=True))} ms ({server}same client, no session)\n"
        f"  baseline: raw count(*) of the events table (sqlite3, same file) "
        f"{report.count_ms:,.2f} ms (median of 5)\n"
        f"  store holds {report.devices:,} devices and {report.events:,} events: as asked"
    )
    met = sum(r.meets_goal for r in report.pages)
    missing = [r.page.name for r in report.pages if r.status == "missing"]
    print(
        f"  {met} of {len(report.pages)} pages meet the goal"
        + (f"; missing: {', '.join(missing)}" if missing else ""),
        flush=True,
    )


def main(args: argparse.Namespace) -> int:
    devices: int = args.devices
    events: int = args.events
    repeat: int = args.repeat
    keep: str | None = args.keep
    if devices < 1 or events < 2 * devices or repeat < 1:
        print(
            "sekimori bench console: need --devices >= 1, --events >= 2 x --devices "
            "(every PC sends its inventory) and --repeat >= 1",
            file=sys.stderr,
        )
        return 2
    try:
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            report = run(Path(keep), devices=devices, events=events, repeat=repeat)
        else:
            with tempfile.TemporaryDirectory(prefix="sekimori-bench-") as tmp:
                report = run(Path(tmp), devices=devices, events=events, repeat=repeat)
    except BenchmarkFailed as exc:
        print(f"sekimori bench console: FAILED: {exc}", file=sys.stderr)
        return 1
    print_report(report)
    errors = [r.page.name for r in report.pages if r.status.startswith("error")]
    if errors:
        print(f"sekimori bench console: FAILED: pages answered with errors: {errors}")
        return 1
    return 0
