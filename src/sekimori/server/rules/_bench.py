"""Timing rule evaluation: the built-in pack plus generated rules against none.

The issue asks that ingest with the built-in pack plus 100 extra rules keep at least
70 % of the throughput with none. This measures the evaluation side alone, per event,
on a realistic mix of payloads built with the real payload structs; set against the
ingest figures of docs/benchmarks.md it says how much of the budget rules take.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from sekimori.protocol.events import Payload
from sekimori.protocol.events.device import UsbAttached
from sekimori.protocol.events.file import FileCreated, FileDeleted, FileModified
from sekimori.protocol.events.network import Connection, NetworkConnections
from sekimori.protocol.events.process import ProcessStarted
from sekimori.protocol.events.session import Logon
from sekimori.protocol.events.web import WebVisit
from sekimori.protocol.events.window import FocusSpan, WindowFocus, WindowInfo
from sekimori.server.rules.engine import RuleSet
from sekimori.server.rules.event import EvalEvent
from sekimori.server.rules.language import load_builtin_rules, load_rules
from sekimori.server.rules.model import Rule

__all__ = [
    "BenchResult",
    "bench_evaluate",
    "bench_lists",
    "generated_rules",
    "generated_rules_source",
    "sample_events",
    "sample_payload",
]

_BASE_US = 1_780_000_000_000_000
_TEMPLATES: tuple[Callable[[int], str], ...] = (
    lambda i: f"kinds: [web.visit]\n  match: {{host: {{domain_in: [bad{i}.example, x{i}.test]}}}}",
    lambda i: f"kinds: [web.visit]\n  match: {{url: {{contains: /leak{i}/}}}}",
    lambda i: f"kinds: [web.visit]\n  match: {{url: {{regex: '/admin/[0-9]+/{i}'}}}}",
    lambda i: f"kinds: [process.started]\n  match: {{exe: {{endswith: /tool{i}}}}}",
    lambda i: (
        f"kinds: [process.started]\n  match: {{all: [{{user: root}}, "
        f"{{'argv[*]': {{startswith: --evil{i}}}}}]}}"
    ),
    lambda i: (
        f"kinds: [file.created, file.modified]\n  match: {{path: {{startswith: /srv/s{i}/}}}}"
    ),
    lambda i: f"kinds: [file.modified]\n  match: {{size: {{gt: {10**9 + i}}}}}",
    lambda i: f"kinds: [window.focus]\n  match: {{window.application: {{equals: App{i}}}}}",
    lambda i: (
        f"kinds: [network.connections]\n  match: "
        f"{{'connections[*].remote_port': {{in: [{4000 + i}, {5000 + i}]}}}}"
    ),
    lambda i: (
        f"kinds: [network.connections]\n  match: "
        f"{{'connections[*].remote_address': {{cidr: [10.{i}.0.0/16]}}}}"
    ),
    lambda i: f"kinds: [session.logon]\n  match: {{not: {{user: {{in: [alice, bob{i}]}}}}}}",
)


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Microseconds per event: with no rules, the built-in pack, and the pack plus the
    generated rules; ``rules`` is how many rules the last set holds."""

    events: int
    rules: int
    none_us: float
    builtin_us: float
    builtin_plus_us: float

    @property
    def added_us(self) -> float:
        """What the pack plus the extra rules add to each event."""
        return self.builtin_plus_us - self.none_us


def generated_rules_source(count: int) -> str:
    """The YAML of ``count`` rules cycling through the templates (operators and kinds
    mixed)."""
    lines = []
    for i in range(count):
        body = _TEMPLATES[i % len(_TEMPLATES)](i)
        lines.append(f"- id: bench.{i}\n  title: Bench {i}\n  severity: low\n  {body}\n")
    return "".join(lines)


def generated_rules(count: int) -> list[Rule]:
    return load_rules(generated_rules_source(count), "bench.yaml")


def bench_lists() -> dict[str, list[str]]:
    """The built-in pack's lists, filled as a real deployment's might be."""
    return {
        "blocked_domains": [f"blocked{i}.example" for i in range(1000)],
        "banned_software": [f"banned{i}" for i in range(200)],
        "blocked_addresses": ["203.0.113.0/24", "198.51.100.7", "2001:db8::/32"],
    }


def sample_events(count: int, seed: int = 5) -> list[EvalEvent]:
    """A mix of web, process, file, window, network, logon and USB events."""
    # Benchmark data, not security: a seeded generator so every run sees the same mix.
    rng = random.Random(seed)  # noqa: S311
    events = []
    for n in range(count):
        pick = rng.random()
        kind, payload = sample_payload(pick, n, rng)
        events.append(
            EvalEvent(
                device_id=f"dev-{n % 50}",
                group="office",
                kind=kind,
                time_us=_BASE_US + n * 10_000,
                os_user=f"user{n % 7}",
                payload=payload,
            )
        )
    return events


def sample_payload(pick: float, n: int, rng: random.Random) -> tuple[str, Payload]:
    host = rng.choice(["intranet.example.jp", "www.example.com", "docs.python.org"])
    # About one event in fifty meets one of the generated rules.
    if rng.random() < 0.02:
        host = f"bad{rng.randrange(0, 100, 11)}.example"
    info = WindowInfo(
        window=n,
        title=f"doc {n}",
        application=rng.choice(["Firefox", "XTerm"]),
        instance="x",
        pid=n,
        exe="/usr/bin/x",
        user="alice",
    )
    if pick < 0.30:
        return "web.visit", WebVisit(
            url=f"https://{host}/page/{n}",
            title="t",
            host=host,
            browser="firefox",
            profile="default",
        )
    if pick < 0.55:
        return "process.started", ProcessStarted(
            pid=n,
            ppid=1,
            name="ls",
            exe="/usr/bin/ls" if rng.random() > 0.02 else "/opt/tool3",
            argv=["ls", "-l", f"/home/{n}"],
            user="alice",
            uid=1000,
            start_time_us=_BASE_US,
            hash_status="ok",
        )
    if pick < 0.65:
        return "file.modified", FileModified(path=f"/home/alice/f{n}.txt", size=n)
    if pick < 0.72:
        return "file.created", FileCreated(path=f"/home/alice/n{n}.txt", size=n)
    if pick < 0.75:
        return "file.deleted", FileDeleted(path=f"/home/alice/d{n}.txt")
    if pick < 0.92:
        return "window.focus", WindowFocus(
            cause="focus", window=info, previous=FocusSpan(window=info, start_us=0, duration_us=1)
        )
    if pick < 0.97:
        connections = [
            Connection(
                pid=n,
                exe="/usr/bin/curl",
                user="alice",
                protocol="tcp",
                remote_address=f"93.184.{i}.{n % 250}",
                remote_port=443,
                local_ports=[40000 + i],
                count=1,
                first_seen_us=0,
                last_seen_us=0,
            )
            for i in range(5)
        ]
        return "network.connections", NetworkConnections(
            period_start_us=0, period_end_us=1, connections=connections
        )
    if pick < 0.99:
        return "session.logon", Logon(user="alice", tty="pts/0")
    return "device.usb_attached", UsbAttached(
        port="1-1",
        bus=1,
        address=n % 100,
        vendor_id="046d",
        product_id="c077",
        interface_classes=["03"],
        category="hid",
    )


def _time(rule_set: RuleSet, events: list[EvalEvent], rounds: int) -> float:
    best = float("inf")
    evaluate = rule_set.evaluate
    for _ in range(rounds):
        start = time.perf_counter()
        for event in events:
            evaluate(event)
        best = min(best, time.perf_counter() - start)
    return best / len(events) * 1e6


def bench_evaluate(events: int = 20_000, extra_rules: int = 100, rounds: int = 3) -> BenchResult:
    """Time ``RuleSet.evaluate`` per event (best of ``rounds``) for: no rules, the
    built-in pack, the pack plus ``extra_rules`` generated rules."""
    sample = sample_events(events)
    lists = bench_lists()
    builtin = load_builtin_rules()
    full = RuleSet([*builtin, *generated_rules(extra_rules)], lists)
    return BenchResult(
        events=events,
        rules=len(full.rules),
        none_us=_time(RuleSet([], lists), sample, rounds),
        builtin_us=_time(RuleSet(builtin, lists), sample, rounds),
        builtin_plus_us=_time(full, sample, rounds),
    )
