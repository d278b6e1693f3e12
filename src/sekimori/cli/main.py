"""``sekimori``: one command with subcommands for server, agent and administration.

Subcommand modules are imported only when used, so ``sekimori agent run`` never loads
the server's libraries.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _server(args: argparse.Namespace) -> int:
    from sekimori.cli import server_cmds

    return server_cmds.run_server(args)


def _init(args: argparse.Namespace) -> int:
    from sekimori.cli import server_cmds

    return server_cmds.init(args)


def _token_create(args: argparse.Namespace) -> int:
    from sekimori.cli import admin_cmds

    return admin_cmds.token_create(args)


def _device_list(args: argparse.Namespace) -> int:
    from sekimori.cli import admin_cmds

    return admin_cmds.device_list(args)


def _device_revoke(args: argparse.Namespace) -> int:
    from sekimori.cli import admin_cmds

    return admin_cmds.device_revoke(args)


def _events(args: argparse.Namespace) -> int:
    from sekimori.cli import admin_cmds

    return admin_cmds.events(args)


def _rollup_rebuild(args: argparse.Namespace) -> int:
    from sekimori.cli import rollup_cmds

    return rollup_cmds.rollup_rebuild(args)


def _screens_rotate_key(args: argparse.Namespace) -> int:
    from sekimori.cli import screens_cmds

    return screens_cmds.screens_rotate_key(args)


def _user(args: argparse.Namespace) -> int:
    from sekimori.cli import user_cmds

    handler: Handler = getattr(user_cmds, f"user_{args.user_command}")
    return handler(args)


def _audit(args: argparse.Namespace) -> int:
    from sekimori.cli import audit_cmds

    handler: Handler = getattr(audit_cmds, f"audit_{args.audit_command}")
    return handler(args)


def _agent_run(args: argparse.Namespace) -> int:
    from sekimori.cli import agent_cmds

    return agent_cmds.run(args)


def _agent_enroll(args: argparse.Namespace) -> int:
    from sekimori.cli import agent_cmds

    return agent_cmds.enroll(args)


def _agent_trust_operators(args: argparse.Namespace) -> int:
    from sekimori.cli import agent_cmds

    return agent_cmds.trust_operators(args)


def _agent_actions_log(args: argparse.Namespace) -> int:
    from sekimori.cli import agent_cmds

    return agent_cmds.actions_log(args)


def _agent_notice(args: argparse.Namespace) -> int:
    from sekimori.cli import agent_cmds

    return agent_cmds.notice(args)


def _demo(args: argparse.Namespace) -> int:
    from sekimori.cli import demo

    return demo.run_demo(args)


def _bench_ingest(args: argparse.Namespace) -> int:
    if args.rules:
        from sekimori.bench import ingest_rules

        if args.database_url:
            print("sekimori bench ingest --rules runs on SQLite only", file=sys.stderr)
            return 2
        return ingest_rules.run_rules_bench(args.agents, args.events)
    from sekimori.bench import ingest

    return ingest.main(args)


def _bench_agent(args: argparse.Namespace) -> int:
    from sekimori.bench import agent_idle

    return agent_idle.main(args)


def _add_user_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add: Callable[..., argparse.ArgumentParser],
) -> None:
    """``user`` and ``audit``: console accounts and the audit trail."""
    user = sub.add_parser("user", help="Console accounts.", description="Console accounts.")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    file_help = (
        "read the password from this file ('-': standard input) instead of generating one; "
        "never give a password on the command line"
    )
    user_add = add(
        user_sub,
        "add",
        _user,
        "Create a console account; a password is generated and printed once "
        "unless --password-file is given.",
    )
    # No abbreviations: "--password SECRET" must be refused, not taken as --password-file.
    user_add.allow_abbrev = False
    user_add.add_argument("name", metavar="NAME")
    user_add.add_argument(
        "--role", required=True, choices=["administrator", "operator", "auditor", "viewer"]
    )
    user_add.add_argument(
        "--group",
        action="append",
        default=[],
        help="a device group the user may see (repeatable; none: every group)",
    )
    user_add.add_argument("--password-file", help=file_help)
    user_list = add(user_sub, "list", _user, "List console accounts with their role and state.")
    user_list.add_argument("--json", action="store_true", help="machine-readable output")
    passwd = add(
        user_sub,
        "passwd",
        _user,
        "Set a new password (generated and printed once, or read from --password-file) "
        "and end the user's sessions.",
    )
    passwd.allow_abbrev = False
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-file", help=file_help)
    disable = add(user_sub, "disable", _user, "Disable an account: its sessions end at once.")
    disable.add_argument("name", metavar="NAME")
    enable = add(user_sub, "enable", _user, "Enable a disabled account again.")
    enable.add_argument("name", metavar="NAME")

    audit = sub.add_parser(
        "audit", help="The console's audit trail.", description="The console's audit trail."
    )
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    add(
        audit_sub,
        "verify",
        _audit,
        "Check the audit trail's hash chain: exit 0 when intact, "
        "1 listing every edited or deleted entry.",
    )
    listing = add(audit_sub, "list", _audit, "Show the newest audit entries, printed oldest first.")
    listing.add_argument("--actor", help="only this actor (exact)")
    listing.add_argument("--action", help="only this action (exact), e.g. login, user.create")
    listing.add_argument("--since", help="how far back, e.g. 30m, 24h, 7d (default: all)")
    listing.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")


def _bench_screens(args: argparse.Namespace) -> int:
    from sekimori.bench import screens

    return screens.main(args)


def _bench_live(args: argparse.Namespace) -> int:
    from sekimori.bench import live

    return live.main(args)


def _bench_console(args: argparse.Namespace) -> int:
    from sekimori.bench import console

    return console.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sekimori",
        description="Sekimori: see and manage an organization's PCs from one place.",
    )
    parser.add_argument("--config", help="TOML settings file (default: $SEKIMORI_CONFIG)")
    parser.add_argument("--data-dir", help="server data directory (default: ./var)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Handler,
        text: str,
    ) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=text, description=text)
        p.set_defaults(handler=handler)
        return p

    add(
        sub,
        "server",
        _server,
        "Run the server: the agent endpoint (TLS) and the ops/console "
        "HTTP endpoint. Initialises the data directory on first run.",
    )
    add(
        sub,
        "init",
        _init,
        "Initialise the data directory (database, PKI, first "
        "administrator) and print the CA fingerprint agents must pin.",
    )

    token = sub.add_parser("token", help="Enrollment tokens.", description="Enrollment tokens.")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = add(
        token_sub,
        "create",
        _token_create,
        "Create a one-time enrollment token for a "
        "device group and print the exact agent command to use it.",
    )
    create.add_argument("--group", default="default", help="device group (created if missing)")
    create.add_argument("--expires", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    create.add_argument("--server-url", help="URL agents dial (default wss://<this host>:<port>)")

    device = sub.add_parser("device", help="Enrolled devices.", description="Enrolled devices.")
    device_sub = device.add_subparsers(dest="device_command", required=True, metavar="ACTION")
    listing = add(device_sub, "list", _device_list, "List enrolled devices with their status.")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = add(
        device_sub,
        "revoke",
        _device_revoke,
        "Revoke a device: it is disconnected within a second and refused from then on.",
    )
    revoke.add_argument("device_id", metavar="ID", help="device id or a unique prefix of it")

    events = add(
        sub, "events", _events, "Show what a device recorded: its newest events, oldest first."
    )
    events.add_argument("--device", required=True, help="device id or a unique prefix of it")
    events.add_argument("--since", default="1h", help="how far back, e.g. 5m, 2h, 7d (default 1h)")
    events.add_argument("--kind", action="append", default=[], help="only this kind (repeatable)")
    events.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    events.add_argument("--json", action="store_true", help="one JSON object per line")

    rollup = sub.add_parser("rollup", help="Report rollups.", description="Report rollups.")
    rollup_sub = rollup.add_subparsers(dest="rollup_command", required=True, metavar="ACTION")
    rebuild = add(
        rollup_sub,
        "rebuild",
        _rollup_rebuild,
        "Recompute the reports' rollups from the stored events (after an upgrade or a "
        "bulk import; run it while no agent is connected).",
    )
    rebuild.add_argument(
        "--since", default="", help="only from this long ago, e.g. 2d (default all)"
    )

    screens = sub.add_parser(
        "screens", help="Stored screen frames.", description="Stored screen frames."
    )
    screens_sub = screens.add_subparsers(dest="screens_command", required=True, metavar="ACTION")
    rotate = add(
        screens_sub,
        "rotate-key",
        _screens_rotate_key,
        "Create a new key for the screen frame store; new frames use it at once, old "
        "frames keep their key unless --reencrypt.",
    )
    rotate.add_argument(
        "--reencrypt",
        action="store_true",
        help="rewrite every stored frame with the new key, then delete the old keys",
    )

    _add_user_commands(sub, add)

    agent = sub.add_parser(
        "agent",
        help="The agent that runs on each PC.",
        description="The agent that runs on each PC.",
    )
    agent_sub = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    run = add(
        agent_sub,
        "run",
        _agent_run,
        "Run the agent: collect, queue durably, and send "
        "to the server it enrolled with. Dials out only; listens on no port.",
    )
    run.add_argument("--state-dir", help="agent state directory (identity, outbox)")
    enroll = add(
        agent_sub,
        "enroll",
        _agent_enroll,
        "Enroll this PC with a server using a one-time token, pinning the server's CA fingerprint.",
    )
    enroll.add_argument(
        "--server", required=True, help="server URL, e.g. wss://sekimori.example:8443"
    )
    enroll.add_argument("--token", required=True, help="one-time enrollment token")
    enroll.add_argument(
        "--ca-fingerprint",
        required=True,
        help="SHA-256 fingerprint of the deployment CA (from 'token create')",
    )
    enroll.add_argument("--group", help="refuse the token unless it is for this group")
    enroll.add_argument("--state-dir", help="agent state directory (identity, outbox)")
    enroll.add_argument(
        "--operators",
        metavar="SHA256:HEX",
        help="fingerprint of the operator keyring to pin (from the enroll command the "
        "server prints); without it this PC refuses every remote action",
    )
    enroll.add_argument(
        "--allow-actions",
        metavar="A,B,...",
        help="remote actions this PC runs at all (default: every one but remote_control)",
    )
    enroll.add_argument(
        "--remote-control", action="store_true", help="also allow remote control (off by default)"
    )
    enroll.add_argument(
        "--collect-paths",
        nargs="+",
        action="append",
        metavar="GLOB",
        help="paths collect_file may read (none by default)",
    )
    enroll.add_argument(
        "--deny-paths", nargs="+", action="append", metavar="GLOB", help="paths it never reads"
    )
    enroll.add_argument(
        "--max-collect-bytes", type=int, metavar="N", help="largest file collect_file sends"
    )
    trust = add(
        agent_sub,
        "trust-operators",
        _agent_trust_operators,
        "Pin an operator keyring file on this PC (enrolled without --operators): remote "
        "actions signed by its operators are then accepted.",
    )
    trust.add_argument("file", help="the keyring file ('sekimori operators show' on the server)")
    trust.add_argument("--fingerprint", required=True, metavar="SHA256:HEX")
    trust.add_argument("--state-dir", help="agent state directory (identity, outbox)")
    actions_log = add(
        agent_sub,
        "actions-log",
        _agent_actions_log,
        "Show this PC's own log of remote actions (received, refused, done, failed).",
    )
    actions_log.add_argument("--verify", action="store_true", help="check the hash chain")
    actions_log.add_argument("--json", action="store_true", help="JSON lines as stored")
    actions_log.add_argument("--state-dir", help="agent state directory (identity, outbox)")
    notice = add(
        agent_sub,
        "notice",
        _agent_notice,
        "Show the monitoring notice of this PC's policy (what is recorded and why), "
        "if its administrators turned the notice on.",
    )
    notice.add_argument("--state-dir", help="agent state directory (identity, outbox)")

    add(
        sub,
        "demo",
        _demo,
        "Run everything on this machine: initialise ./var, start the "
        "server, enroll this PC and run its agent. Ctrl-C stops it all.",
    )

    bench = sub.add_parser("bench", help="Benchmarks.", description="Benchmarks.")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="NAME")
    ingest = add(
        bench_sub,
        "ingest",
        _bench_ingest,
        "End-to-end ingest rate (agent outboxes "
        "to committed rows) beside the raw SQLite insert rate of the same rows.",
    )
    ingest.add_argument("--agents", type=int, default=8)
    ingest.add_argument("--events", type=int, default=200_000, help="total events")
    ingest.add_argument("--database-url", help="store to benchmark (default: SQLite)")
    ingest.add_argument(
        "--rules",
        action="store_true",
        help="mixed events, run twice: no rules, then the built-in pack + 100 rules; "
        "prints the ratio (goal >= 0.70)",
    )
    idle = add(
        bench_sub,
        "agent",
        _bench_agent,
        "The agent's RSS and CPU over a period: idle (the default), or with --workload "
        "at work on a busy desktop, checking that no event is missed.",
    )
    idle.add_argument("--seconds", type=float, default=60.0, help="measured window")
    idle.add_argument(
        "--workload",
        action="store_true",
        help="every collector on, ~--processes processes, and a scripted workload "
        "(process churn, file operations, focus changes on Xvfb, Chromium page visits); "
        "fails unless every event it produced reaches the server",
    )
    idle.add_argument(
        "--processes",
        type=int,
        default=400,
        help="with --workload: idle processes are added until the machine runs this many",
    )
    console = add(
        bench_sub,
        "console",
        _bench_console,
        "Server time per console page (p50/p95 from Server-Timing) on a generated store "
        "of --devices PCs and --events events over 30 days, beside a /healthz round trip "
        "and a raw count(*).",
    )
    screens = add(
        bench_sub,
        "screens",
        _bench_screens,
        "Agent cost per screen frame (capture, diff, encode p50/p95) and mean stored frame "
        "size at 1920x1080 on an office desktop under Xvfb, for each encoding option, beside "
        "the capture alone.",
    )
    screens.add_argument("--steps", type=int, default=60, help="user actions (frames)")
    live = add(
        bench_sub,
        "live",
        _bench_live,
        "Live view: latency from the screen grab on the PC to the picture at the console "
        "viewer (p50/p95) and the frame rate achieved, with a real server, agent and Xvfb.",
    )
    live.add_argument("--seconds", type=float, default=20.0, help="how long to watch")
    console.add_argument("--devices", type=int, default=20_000)
    console.add_argument("--events", type=int, default=10_000_000)
    console.add_argument("--repeat", type=int, default=20, help="timed requests per page")
    console.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the generated store in DIR and reuse it on later runs (one per "
        "--devices/--events pair; generating 10M events takes minutes)",
    )
    from sekimori.cli import action_cmds  # builds parsers only; handlers import lazily

    action_cmds.register(sub, add)
    action_cmds.register_bench(bench_sub, add)
    from sekimori.cli import vuln_cmds  # builds parsers only; handlers import lazily

    vuln_cmds.register(sub, add)
    vuln_cmds.register_bench(bench_sub, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    from sekimori.cli.common import CommandError, fail

    try:
        return handler(args)
    except CommandError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
