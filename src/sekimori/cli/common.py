"""What the subcommands share: settings from the command line, errors to stderr."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys

from sekimori.logs import configure_logging
from sekimori.settings import Settings, SettingsError, load_settings

__all__ = ["CommandError", "fail", "parse_duration", "settings_from_args"]


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit status 1."""


def fail(message: str) -> int:
    print(f"sekimori: error: {message}", file=sys.stderr)
    return 1


def settings_from_args(args: argparse.Namespace, *, component: str) -> Settings:
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    if getattr(args, "data_dir", None):
        settings.data_dir = args.data_dir
    if getattr(args, "state_dir", None):
        settings.agent.state_dir = args.state_dir
    configure_logging(settings.log, component=component)
    return settings


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '30m', '1h', '7d' -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise CommandError(f"invalid duration {text!r}: use e.g. 30m, 1h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def cli_actor() -> str:
    """Who is at the keyboard, as the audit trail names them."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        name = f"uid {os.getuid()}"
    return f"cli:{name}"
