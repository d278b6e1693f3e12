"""``sekimori vuln``: import vulnerability feeds, fetch them, show their status.

Every import (good or refused) is audited like the other administration commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sekimori.cli.common import CommandError, cli_actor, settings_from_args
from sekimori.clock import now_us
from sekimori.server.bootstrap import open_store
from sekimori.server.store.audit import append_audit
from sekimori.server.store.engine import migrate
from sekimori.server.store.schema import vuln_findings, vulnerabilities
from sekimori.server.store.vulns import feed_status
from sekimori.server.vuln.feeds import FeedError, FeedLimits
from sekimori.server.vuln.fetch import Downloader, UrlDownloader
from sekimori.server.vuln.importer import import_feed

__all__ = ["register", "register_bench", "vuln_fetch", "vuln_import", "vuln_status"]

Add = Callable[..., argparse.ArgumentParser]


def _import_one(engine: sa.Engine, data: bytes, source: str, kind: str | None) -> bool:
    actor = cli_actor()
    try:
        record = import_feed(
            engine, data, source=source, imported_by=actor, now_us=now_us(), kind=kind
        )
    except FeedError as exc:
        append_audit(
            engine,
            actor=actor,
            action="vuln.import",
            target=source,
            detail={"kind": kind, "status": "failed", "error": str(exc)},
        )
        print(f"sekimori: error: {source}: refused, nothing changed: {exc}", file=sys.stderr)
        return False
    append_audit(
        engine,
        actor=actor,
        action="vuln.import",
        target=source,
        detail={
            "kind": record.kind,
            "status": "ok",
            "records": record.records,
            "advisories": record.advisories,
            "kev_entries": record.kev_entries,
        },
    )
    what = (
        f"{record.kev_entries:,} KEV entries"
        if record.kind == "kev"
        else f"{record.advisories:,} advisories, {record.ranges:,} affected ranges"
    )
    print(f"{source}: {record.kind} import #{record.id}: {record.records:,} records read, {what}")
    if record.message:
        print(f"  {record.message}")
    print("  findings are re-evaluated by the server within a minute")
    return True


def vuln_import(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="cli")
    path = Path(args.file)
    limit = FeedLimits().max_file_bytes
    try:
        if path.stat().st_size > limit:
            raise CommandError(f"{path}: larger than {limit} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    engine = open_store(settings)
    try:
        migrate(engine)
        ok = _import_one(engine, data, path.name, args.kind)
    finally:
        engine.dispose()
    return 0 if ok else 1


def vuln_fetch(args: argparse.Namespace, downloader: Downloader | None = None) -> int:
    settings = settings_from_args(args, component="cli")
    sources = [f for f in settings.server.vuln.feeds if args.kind in (None, f.kind)]
    if not sources:
        raise CommandError("no feed URLs configured: set [[server.vuln.feeds]] kind and url")
    downloader = downloader or UrlDownloader()
    engine = open_store(settings)
    failures = 0
    try:
        migrate(engine)
        for source in sources:
            try:
                data = downloader.fetch(
                    source.url,
                    max_bytes=FeedLimits().max_file_bytes,
                    timeout=settings.server.vuln.fetch_timeout_seconds,
                )
            except FeedError as exc:
                failures += 1
                append_audit(
                    engine,
                    actor=cli_actor(),
                    action="vuln.fetch",
                    target=source.url,
                    detail={"kind": source.kind, "status": "failed", "error": str(exc)},
                )
                print(f"sekimori: error: {exc}", file=sys.stderr)
                continue
            if not _import_one(engine, data, source.url, source.kind):
                failures += 1
    finally:
        engine.dispose()
    return 1 if failures else 0


def vuln_status(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="cli")
    engine = open_store(settings)
    try:
        migrate(engine)
        now = now_us()
        feeds = feed_status(engine, now_us=now, stale_days=settings.server.vuln.stale_days)
        with engine.connect() as conn:
            advisories = conn.execute(
                sa.select(sa.func.count()).select_from(vulnerabilities)
            ).scalar_one()
            exploited = conn.execute(
                sa.select(sa.func.count()).where(vulnerabilities.c.known_exploited.is_(True))
            ).scalar_one()
            open_findings = conn.execute(
                sa.select(sa.func.count()).where(vuln_findings.c.resolved_us.is_(None))
            ).scalar_one()
            exposed = conn.execute(
                sa.select(sa.func.count(sa.distinct(vuln_findings.c.device_id))).where(
                    vuln_findings.c.resolved_us.is_(None)
                )
            ).scalar_one()
    finally:
        engine.dispose()
    if args.json:
        out: dict[str, Any] = {
            "feeds": [dataclasses.asdict(f) for f in feeds],
            "vulnerabilities": advisories,
            "known_exploited": exploited,
            "open_findings": open_findings,
            "exposed_devices": exposed,
        }
        print(json.dumps(out))
        return 0
    for f in feeds:
        state = (
            "never imported" if f.last_ok_us is None else f"{f.records:,} records from {f.source}"
        )
        age = (
            ""
            if f.last_ok_us is None
            else f", {(now - f.last_ok_us) / 86_400_000_000:.1f} days ago"
        )
        stale = "  STALE" if f.stale else ""
        print(f"{f.kind:4} {state}{age}{stale}")
        if f.last_error:
            print(f"     last import failed: {f.last_error}")
    print(
        f"{advisories:,} vulnerabilities ({exploited:,} known exploited); "
        f"{open_findings:,} open findings on {exposed:,} devices"
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from sekimori.bench import vuln

    return vuln.main(args)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    """``sekimori vuln import|fetch|status``."""
    vuln = sub.add_parser(
        "vuln", help="Vulnerability feeds.", description="Vulnerability feeds and findings."
    )
    vuln_sub = vuln.add_subparsers(dest="vuln_command", required=True, metavar="ACTION")
    imp = add(
        vuln_sub,
        "import",
        vuln_import,
        "Import a feed file: OSV (a record, an array, or a zip such as all.zip), the CISA "
        "KEV catalog, or NVD CVE JSON 2.0. All or nothing: a bad file changes nothing.",
    )
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--kind", choices=["osv", "kev", "nvd"], help="default: detected")
    fetch = add(
        vuln_sub,
        "fetch",
        vuln_fetch,
        "Download the feeds configured in [[server.vuln.feeds]] and import them.",
    )
    fetch.add_argument("--kind", choices=["osv", "kev", "nvd"], help="only feeds of this kind")
    status = add(
        vuln_sub, "status", vuln_status, "Show each feed's last import and the findings count."
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")


def register_bench(
    bench_sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add
) -> None:
    """``sekimori bench vuln``."""
    bench = add(
        bench_sub,
        "vuln",
        _bench,
        "Vulnerability matching: --devices PCs x --packages packages against a synthetic "
        "Debian OSV feed of full size (full re-match, and one changed device), beside the "
        "time to scan the same rows.",
    )
    bench.add_argument("--devices", type=int, default=10_000)
    bench.add_argument("--packages", type=int, default=2_000)
    bench.add_argument("--records", type=int, default=45_000, help="synthetic OSV records")
    bench.add_argument("--database-url", help="store to benchmark (default: SQLite in a temp dir)")
