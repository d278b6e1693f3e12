"""``sekimori agent run``, ``enroll``, ``notice``, ``trust-operators`` and
``actions-log`` (agent-side: no server imports)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from sekimori.agent.identity import NotEnrolled
from sekimori.cli.common import CommandError, settings_from_args

__all__ = ["actions_log", "enroll", "notice", "run", "trust_operators"]


def run(args: argparse.Namespace) -> int:
    from sekimori.agent.collectors.supervisor import CollectorConfigError
    from sekimori.agent.runtime import run_agent

    settings = settings_from_args(args, component="agent")
    try:
        return run_agent(settings.agent)
    except (NotEnrolled, CollectorConfigError) as exc:
        raise CommandError(str(exc)) from None


def enroll(args: argparse.Namespace) -> int:
    from sekimori.agent.actions.local_policy import LocalPolicyError, policy_from_flags
    from sekimori.agent.enroll import EnrollmentError
    from sekimori.agent.enroll import enroll as do_enroll

    settings = settings_from_args(args, component="agent")
    try:
        action_policy = policy_from_flags(
            allow_actions=args.allow_actions,
            remote_control=args.remote_control,
            collect_paths=[g for group in args.collect_paths or [] for g in group],
            deny_paths=[g for group in args.deny_paths or [] for g in group],
            max_collect_bytes=args.max_collect_bytes,
        )
    except LocalPolicyError as exc:
        raise CommandError(str(exc)) from None
    try:
        identity = do_enroll(
            Path(settings.agent.state_dir),
            args.server,
            args.token,
            args.ca_fingerprint,
            group=args.group,
            operators=args.operators,
            action_policy=action_policy,
        )
    except EnrollmentError as exc:
        raise CommandError(str(exc)) from None
    print(f"enrolled as device {identity.device_id}; start the agent with 'sekimori agent run'")
    if args.operators is None:
        print(
            "no operator keyring pinned: this PC refuses every remote action until "
            "'sekimori agent trust-operators FILE --fingerprint SHA256:…' is run here"
        )
    return 0


def trust_operators(args: argparse.Namespace) -> int:
    """Pin an operator keyring file on a PC enrolled without ``--operators``."""
    from sekimori.agent.actions.keyring import KeyringError, pin_keyring
    from sekimori.protocol.signing import (
        SignedKeyring,
        decode_signed_keyring,
        encode_signed_keyring,
    )

    settings = settings_from_args(args, component="agent")
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    state_dir = Path(settings.agent.state_dir)
    if not state_dir.is_dir():
        raise CommandError(f"{state_dir} does not exist: enroll this PC first")
    try:
        decode_signed_keyring(data)
    except ValueError:
        # The file may hold the keyring body alone (version 1 has no signatures).
        data = encode_signed_keyring(SignedKeyring(body=data))
    try:
        pinned = pin_keyring(state_dir, data, args.fingerprint)
    except KeyringError as exc:
        raise CommandError(str(exc)) from None
    operators = sorted({k.operator for k in pinned.keyring.keys})
    print(
        f"operator keyring version {pinned.version} pinned "
        f"({len(pinned.keyring.keys)} keys: {', '.join(operators)}; quorum "
        f"{pinned.keyring.quorum})"
    )
    return 0


def actions_log(args: argparse.Namespace) -> int:
    """Print the PC's local log of remote actions; ``--verify`` checks its chain."""
    from sekimori.agent.actions.audit_log import LOG_FILE, read_entries, verify_log

    settings = settings_from_args(args, component="agent")
    path = Path(settings.agent.state_dir) / LOG_FILE
    if not args.verify:
        if not path.exists():
            print("no remote action was received on this PC")
            return 0
        for _number, raw in read_entries(path):
            if args.json:
                sys.stdout.write(raw.decode(errors="replace") + "\n")
                continue
            try:
                entry = json.loads(raw)
                when = datetime.fromtimestamp(entry["time_us"] / 1e6, UTC)
                signers = ",".join(entry.get("signers") or []) or "-"
                print(
                    f"{when:%Y-%m-%d %H:%M:%S}Z {entry['step']:<8} {entry['action'] or '?':<17} "
                    f"{entry['nonce']} by {entry.get('requested_by') or '-'} "
                    f"signed {signers} {entry.get('reason') or ''}".rstrip()
                )
            except (ValueError, KeyError, TypeError):
                print(f"(unreadable line) {raw[:200]!r}")
    check = verify_log(path)
    if args.json and args.verify:
        print(
            json.dumps(
                {
                    "ok": check.ok,
                    "lines": check.lines,
                    "bad_line": check.bad_line,
                    "error": check.error,
                }
            )
        )
    elif args.verify or not check.ok:
        if check.ok:
            print(f"chain verified: {check.lines} line(s), none changed")
        else:
            print(f"CHAIN BROKEN: {check.error}", file=sys.stderr)
    return 0 if check.ok else 1


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
