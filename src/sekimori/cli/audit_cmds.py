"""The audit trail from the server machine: ``sekimori audit verify`` and ``audit list``."""

from __future__ import annotations

import argparse

import msgspec

from sekimori.cli.common import CommandError, parse_duration
from sekimori.cli.user_cmds import store
from sekimori.clock import format_us, now_us
from sekimori.server.store.audit import search_audit, verify_chain

__all__ = ["audit_list", "audit_verify"]


def audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the chain is intact; 1, listing each problem, when it is not."""
    with store(args) as engine:
        report = verify_chain(engine)
    if report.intact:
        print(f"{report.entries} entries, chain intact")
        return 0
    print(f"{report.entries} entries, chain BROKEN ({len(report.problems)} problem(s)):")
    for problem in report.problems:
        print(f"  {problem}")
    return 1


def audit_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 100_000:
        raise CommandError("--limit must be between 1 and 100000")
    since_us = now_us() - int(parse_duration(args.since) * 1_000_000) if args.since else None
    with store(args) as engine:
        found = search_audit(
            engine,
            actor=args.actor,
            action=args.action,
            since_us=since_us,
            limit=args.limit,
        )
    # Newest `limit` entries, printed oldest first (like a log file).
    for e in reversed(found.entries):
        if args.json:
            record = {
                "seq": e.seq,
                "time": format_us(e.time_us),
                "time_us": e.time_us,
                "actor": e.actor,
                "client_ip": e.client_ip,
                "action": e.action,
                "target": e.target,
                "detail": e.detail_dict(),
                "hash": e.hash,
            }
            print(msgspec.json.encode(record).decode("utf-8"))
        else:
            print(
                f"{format_us(e.time_us)}  #{e.seq:<6} {e.actor:<16} {e.action:<24} "
                f"{e.target or '-':<20} {e.detail}"
            )
    if not found.entries and not args.json:
        print("(no audit entries match)")
    return 0
