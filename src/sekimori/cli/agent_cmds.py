"""``sekimori agent run``, ``enroll`` and ``notice`` (agent-side: no server imports)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sekimori.agent.identity import NotEnrolled
from sekimori.cli.common import CommandError, settings_from_args

__all__ = ["enroll", "notice", "run"]


def run(args: argparse.Namespace) -> int:
    from sekimori.agent.collectors.supervisor import CollectorConfigError
    from sekimori.agent.runtime import run_agent

    settings = settings_from_args(args, component="agent")
    try:
        return run_agent(settings.agent)
    except (NotEnrolled, CollectorConfigError) as exc:
        raise CommandError(str(exc)) from None


def enroll(args: argparse.Namespace) -> int:
    from sekimori.agent.enroll import EnrollmentError
    from sekimori.agent.enroll import enroll as do_enroll

    settings = settings_from_args(args, component="agent")
    try:
        identity = do_enroll(
            Path(settings.agent.state_dir),
            args.server,
            args.token,
            args.ca_fingerprint,
            group=args.group,
        )
    except EnrollmentError as exc:
        raise CommandError(str(exc)) from None
    print(f"enrolled as device {identity.device_id}; start the agent with 'sekimori agent run'")
    return 0


def notice(args: argparse.Namespace) -> int:
    """Print the monitoring notice of the policy in force (for the PC's user: the
    world-readable copy is read first, then the one in the state directory)."""
    from sekimori.agent.policy import NOTICE_FILE, read_notice

    settings = settings_from_args(args, component="agent")
    paths = [Path(settings.agent.state_dir) / NOTICE_FILE]
    if settings.agent.notice_path:
        paths.insert(0, Path(settings.agent.notice_path))
    text = read_notice(paths)
    if text is None:
        print("No monitoring notice is in force on this PC. / このPCに監視のお知らせはありません。")
        return 0
    print(text, end="" if text.endswith("\n") else "\n")
    return 0
