"""Administration from the server machine: tokens and devices."""

from __future__ import annotations

import argparse

import msgspec

from sekimori.cli.common import CommandError, cli_actor, parse_duration, settings_from_args
from sekimori.cli.server_cmds import announce
from sekimori.clock import format_us, now_us
from sekimori.server.actions.keyrings import current_fingerprint
from sekimori.server.agent_command import agent_url, enroll_command
from sekimori.server.bootstrap import initialize, open_store
from sekimori.server.store.audit import append_audit
from sekimori.server.store.devices import (
    Device,
    DeviceNotFound,
    list_devices,
    resolve_device_id,
    revoke_device,
)
from sekimori.server.store.event_queries import recent_events
from sekimori.server.store.tokens import create_token

__all__ = ["device_list", "device_revoke", "token_create"]


def token_create(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="cli")
    ttl = parse_duration(args.expires)
    if ttl > settings.server.enrollment_token_max_hours * 3600:
        raise CommandError(
            f"tokens may live at most {settings.server.enrollment_token_max_hours:g} hours"
        )
    result = initialize(settings)
    if result.admin_password:
        announce(result)  # a fresh data directory: show the first password once
    try:
        issued = create_token(
            result.engine, group=args.group, ttl_seconds=ttl, created_by=cli_actor()
        )
        operators = current_fingerprint(result.engine)
        append_audit(
            result.engine,
            actor=cli_actor(),
            action="enrollment.token_create",
            target=issued.group,
            detail={"expires_us": issued.expires_us},
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    finally:
        result.engine.dispose()
    url = agent_url(settings.server, args.server_url or "")
    print(
        f"Token for group {issued.group!r}, valid until {format_us(issued.expires_us)}, "
        "usable once:"
    )
    print(issued.token)
    print()
    print("On the PC to enroll, run:")
    print(f"  {enroll_command(url, issued.token, result.pki.ca_fingerprint(), operators)}")
    return 0


def device_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="cli")
    engine = open_store(settings)
    try:
        devices = list_devices(engine)
    finally:
        engine.dispose()
    now = now_us()
    hb = settings.server.heartbeat_seconds

    def status(d: Device) -> str:
        if d.revoked_us is not None:
            return "revoked"
        return "online" if d.online(now, hb) else "offline"

    if args.json:
        rows = [
            {
                "id": d.id,
                "hostname": d.hostname,
                "group": d.group,
                "os": d.os,
                "os_version": d.os_version,
                "agent_version": d.agent_version,
                "status": status(d),
                "online": status(d) == "online",
                "enrolled": format_us(d.enrolled_us),
                "first_seen": format_us(d.first_seen_us),
                "last_seen": format_us(d.last_seen_us),
                "revoked": format_us(d.revoked_us),
                "events_stored_through": d.acked_seq,
                "outbox_events": d.outbox_events,
                "dropped_total": d.dropped_total,
            }
            for d in devices
        ]
        print(msgspec.json.format(msgspec.json.encode(rows)).decode("utf-8"))
        return 0
    header = ("ID", "HOSTNAME", "GROUP", "OS", "AGENT", "STATUS", "LAST SEEN")
    table = [header] + [
        (d.id, d.hostname, d.group, d.os, d.agent_version, status(d), format_us(d.last_seen_us))
        for d in devices
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if not devices:
        print("(no devices enrolled: create a token with 'sekimori token create')")
    return 0


def events(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="cli")
    since = now_us() - int(parse_duration(args.since) * 1_000_000)
    if not 1 <= args.limit <= 100_000:
        raise CommandError("--limit must be between 1 and 100000")
    engine = open_store(settings)
    try:
        device_id = resolve_device_id(engine, args.device)
        found = recent_events(
            engine, device_id=device_id, since_us=since, kinds=args.kind, limit=args.limit
        )
        # Reading a PC's activity is audited wherever it happens.
        append_audit(
            engine,
            actor=cli_actor(),
            action="activity.view_device",
            target=device_id,
            detail={"since": args.since, "kinds": list(args.kind), "limit": args.limit},
        )
    except DeviceNotFound as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    for e in found:
        if args.json:
            record = {
                "time": format_us(e.time_us),
                "time_us": e.time_us,
                "seq": e.seq,
                "kind": e.kind,
                "os_user": e.os_user,
                "payload": msgspec.json.decode(e.payload),
            }
            print(msgspec.json.encode(record).decode("utf-8"))
        else:
            summary = e.payload if len(e.payload) <= 160 else e.payload[:157] + "..."
            print(f"{format_us(e.time_us)}  {e.kind:<24} {e.os_user or '-':<12} {summary}")
    if not found and not args.json:
        print(f"(no events from {device_id} in the last {args.since})")
    return 0


def device_revoke(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="cli")
    engine = open_store(settings)
    try:
        device_id = resolve_device_id(engine, args.device_id)
        changed = revoke_device(engine, device_id)
        if changed:
            append_audit(engine, actor=cli_actor(), action="device.revoke", target=device_id)
    except DeviceNotFound as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    print(f"device {device_id} {'revoked' if changed else 'was already revoked'}")
    return 0
