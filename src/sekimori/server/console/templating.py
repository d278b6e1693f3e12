"""Jinja2 environment for the console: autoescaped, translated, with time filters."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from sekimori.server.console import i18n
from sekimori.server.console.permissions import role_label

__all__ = ["make_environment"]

_TEMPLATES = Path(__file__).parent / "templates"


def make_environment(timezone: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    zone = zoneinfo.ZoneInfo(timezone)

    def when(us: int | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        if us is None:
            return "—"
        return dt.datetime.fromtimestamp(us / 1_000_000, tz=zone).strftime(fmt)

    def duration(us: int | None) -> str:
        if us is None:
            return "—"
        seconds = max(0, us // 1_000_000)
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

    def size(n: int | None) -> str:
        if n is None:
            return "—"
        value = float(n)
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if value < 1024 or unit == "TiB":
                return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            value /= 1024
        return f"{n} B"

    env.filters["when"] = when
    env.filters["duration"] = duration
    env.filters["size"] = size
    env.globals["timezone"] = timezone
    env.globals["locale"] = i18n.active_locale
    env.globals["role_label"] = role_label
    return env


def render(env: Environment, name: str, context: dict[str, Any]) -> str:
    return env.get_template(name).render(context)
