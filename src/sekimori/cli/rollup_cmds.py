"""``sekimori rollup rebuild``: recompute the report rollups from the stored events."""

from __future__ import annotations

import argparse
import time

from sekimori.cli.common import parse_duration, settings_from_args
from sekimori.clock import now_us
from sekimori.server.bootstrap import open_store
from sekimori.server.store.rollups import rebuild_rollups

__all__ = ["rollup_rebuild"]


def rollup_rebuild(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="cli")
    engine = open_store(settings)
    try:
        since = None if not args.since else now_us() - int(parse_duration(args.since) * 1_000_000)
        started = time.perf_counter()
        rows = rebuild_rollups(engine, since_us=since)
    finally:
        engine.dispose()
    print(f"{rows:,} rollup rows written in {time.perf_counter() - started:.1f} s")
    return 0
