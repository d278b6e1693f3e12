"""Console accounts from the server machine: ``sekimori user add/list/passwd/disable/enable``.

Passwords never travel on the command line (other local users can read a process's
arguments): they are generated and printed once, or read from a file (``-`` for
standard input). Every change is written to the audit trail as ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from sekimori.cli.common import CommandError, cli_actor, settings_from_args
from sekimori.cli.server_cmds import announce
from sekimori.clock import format_us, now_us
from sekimori.server.bootstrap import initialize, open_store
from sekimori.server.store.audit import append_audit
from sekimori.server.store.sessions import end_user_sessions
from sekimori.server.store.users import (
    ROLES,
    User,
    UserNotFound,
    create_user,
    generate_password,
    get_user_by_name,
    list_users,
    set_disabled,
    set_password,
)

__all__ = ["user_add", "user_disable", "user_enable", "user_list", "user_passwd"]


@contextmanager
def store(args: argparse.Namespace) -> Iterator[sa.Engine]:
    """The store, for reading and changing what is there (not initialising it)."""
    settings = settings_from_args(args, component="cli")
    engine = open_store(settings)
    try:
        yield engine
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        raise CommandError(
            f"cannot read the store at {settings.database_url} "
            f"(is it initialised? 'sekimori init'): {exc.orig}"
        ) from None
    finally:
        engine.dispose()


def read_password(path: str) -> str:
    """A password from a file (``-``: standard input); one trailing newline dropped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read the password file: {exc}") from None
    return text.removesuffix("\n").removesuffix("\r")


def _groups(user: User) -> str | list[str]:
    return "all" if user.all_groups else list(user.groups)


def _audit(engine: sa.Engine, action: str, target: str, **detail: Any) -> None:
    append_audit(engine, actor=cli_actor(), action=action, target=target, detail=detail)


def _find(engine: sa.Engine, name: str) -> User:
    try:
        return get_user_by_name(engine, name)
    except UserNotFound:
        raise CommandError(f"no user named {name!r}") from None


def user_add(args: argparse.Namespace) -> int:
    if args.role not in ROLES:
        raise CommandError(f"unknown role {args.role!r}: one of {', '.join(ROLES)}")
    password = read_password(args.password_file) if args.password_file else generate_password()
    settings = settings_from_args(args, component="cli")
    result = initialize(settings)  # a fresh data directory works too
    if result.admin_password:
        announce(result)
    engine = result.engine
    try:
        create_user(
            engine,
            args.name,
            password,
            args.role,
            groups_=args.group,
            all_groups=not args.group,
        )
        user = get_user_by_name(engine, args.name.strip())
        _audit(engine, "user.create", user.username, role=user.role, groups=_groups(user))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    groups = "all" if user.all_groups else ", ".join(user.groups)
    print(f"user {user.username!r} created: {user.role}, device groups: {groups}")
    if not args.password_file:
        print(f"password (shown only once): {password}")
    return 0


def user_list(args: argparse.Namespace) -> int:
    with store(args) as engine:
        found = list_users(engine)
    now = now_us()

    def locked(u: User) -> str:
        return format_us(u.locked_until_us) if u.locked_until_us and u.locked_until_us > now else ""

    if args.json:
        rows = [
            {
                "name": u.username,
                "role": u.role,
                "groups": _groups(u),
                "totp": u.totp_enabled,
                "disabled": u.disabled,
                "created": format_us(u.created_us),
                "last_login": format_us(u.last_login_us),
                "locked_until": locked(u),
            }
            for u in found
        ]
        print(msgspec.json.format(msgspec.json.encode(rows)).decode("utf-8"))
        return 0
    header = ("NAME", "ROLE", "GROUPS", "2FA", "STATUS", "LAST LOGIN", "LOCKED UNTIL")
    table = [header] + [
        (
            u.username,
            u.role,
            "all" if u.all_groups else ",".join(u.groups) or "-",
            "on" if u.totp_enabled else "off",
            "disabled" if u.disabled else "active",
            format_us(u.last_login_us) or "-",
            locked(u) or "-",
        )
        for u in found
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    password = read_password(args.password_file) if args.password_file else generate_password()
    with store(args) as engine:
        user = _find(engine, args.name)
        try:
            set_password(engine, user.id, password)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        ended = end_user_sessions(engine, user.id)
        _audit(engine, "user.password_reset", user.username, sessions_ended=ended)
    print(f"password of {user.username!r} changed; {ended} session(s) ended")
    if not args.password_file:
        print(f"new password (shown only once): {password}")
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    with store(args) as engine:
        user = _find(engine, args.name)
        set_disabled(engine, user.id, disabled)
        # Disabling ends the user's sessions at once (load_session refuses them too).
        ended = end_user_sessions(engine, user.id) if disabled else 0
        if user.disabled != disabled:
            _audit(
                engine,
                "user.disable" if disabled else "user.enable",
                user.username,
                disabled={"old": user.disabled, "new": disabled},
                sessions_ended=ended,
            )
    state = "disabled" if disabled else "enabled"
    if user.disabled == disabled:
        print(f"user {user.username!r} was already {state}")
    else:
        print(
            f"user {user.username!r} {state}" + (f"; {ended} session(s) ended" if disabled else "")
        )
    return 0


def user_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def user_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)
