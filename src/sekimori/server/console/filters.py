"""The activity filters of the log search and the reports, parsed from the query
string into one typed, validated object.

``since``/``until`` are either a ``datetime-local`` value ("YYYY-MM-DDTHH:MM", also
with seconds, or a bare date) read in the console's time zone, or a relative age
("15m", "24h", "7d", "2w") counted back from now. Everything else is free text with
a length limit, or (``kind``) one of the known event kinds or a whole domain
("file.").

Bad input raises ``FilterError`` with a message (marked for translation, with its
placeholders) that the page shows with status 400 — never a 500.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sekimori.protocol.events import EVENT_KINDS
from sekimori.server.console.i18n import N_, gettext

__all__ = [
    "LOGS_DEFAULT_SINCE",
    "MAX_PAGE",
    "PAGE_SIZE",
    "REPORTS_DEFAULT_SINCE",
    "ActivityFilter",
    "FilterError",
    "kind_domains",
    "parse_activity_filter",
]

PAGE_SIZE: Final = 50
# Offset paging is bounded: past this the search must be narrowed (a deep OFFSET
# over millions of rows is slow, and nobody reads 10,000 rows page by page).
MAX_PAGE: Final = 200
LOGS_DEFAULT_SINCE: Final = "24h"
REPORTS_DEFAULT_SINCE: Final = "7d"
LOGS_MAX_DAYS: Final = 366
REPORTS_MAX_DAYS: Final = 92

_MAX_TEXT: Final = {"device": 255, "group": 128, "user": 256, "q": 200}
_RELATIVE = re.compile(r"(\d{1,5})([mhdw])")
_UNIT_S: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LOCAL_FORMATS: Final = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")
# The form's labels, to name a field in an error message.
_FIELD_LABELS: Final = {
    "since": N_("From"),
    "until": N_("To"),
    "device": N_("Device"),
    "group": N_("Group"),
    "user": N_("OS user"),
    "q": N_("Text contains"),
}
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
_EARLIEST_US: Final = int(_EARLIEST.timestamp()) * 1_000_000


class FilterError(ValueError):
    """A filter value the page cannot use. ``message`` is an English msgid with
    ``%(name)s`` placeholders filled from ``params``; ``text()`` translates it."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message % params)
        self.message = message
        self.params = params

    def text(self) -> str:
        params = dict(self.params)
        if params.get("field") in _FIELD_LABELS:
            params["field"] = gettext(_FIELD_LABELS[params["field"]])
        return gettext(self.message) % params


@dataclass(frozen=True, slots=True)
class ActivityFilter:
    """What to search: a time range ``[since_us, until_us)`` and optional narrowing.

    ``since``/``until`` keep the text as typed (for the form and links);
    ``kinds`` is empty for every kind.
    """

    since_us: int
    until_us: int
    since: str
    until: str = ""
    device: str = ""
    group: str = ""
    user: str = ""
    kind: str = ""
    kinds: tuple[str, ...] = ()
    q: str = ""
    page: int = 1
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE

    def query(self, **override: str | int) -> dict[str, str]:
        """The filter as query parameters (empty ones left out), for links."""
        values: dict[str, str | int] = {
            "since": self.since,
            "until": self.until,
            "device": self.device,
            "group": self.group,
            "user": self.user,
            "kind": self.kind,
            "q": self.q,
            **self.extra,
        }
        values.update(override)
        return {k: str(v) for k, v in values.items() if v not in ("", None)}

    def audit_detail(self) -> dict[str, Any]:
        """What was searched, for the audit trail."""
        detail: dict[str, Any] = {"since_us": self.since_us, "until_us": self.until_us}
        for name in ("since", "until", "device", "group", "user", "kind", "q"):
            value = getattr(self, name)
            if value:
                detail[name] = value
        detail.update(self.extra)
        return detail


def kind_domains() -> dict[str, list[str]]:
    """Known event kinds grouped by domain ("web" -> ["web.visit"]), in registry order."""
    domains: dict[str, list[str]] = {}
    for kind in EVENT_KINDS:
        domains.setdefault(kind.split(".", 1)[0], []).append(kind)
    return domains


def _parse_time(name: str, raw: str, zone: zoneinfo.ZoneInfo, now_us: int) -> int:
    relative = _RELATIVE.fullmatch(raw)
    if relative:
        at_us = now_us - int(relative.group(1)) * _UNIT_S[relative.group(2)] * 1_000_000
        if at_us < _EARLIEST_US:
            raise FilterError(N_("%(field)s: %(value)s is out of range."), field=name, value=raw)
        return at_us
    for fmt in _LOCAL_FORMATS:
        try:
            naive = dt.datetime.strptime(raw, fmt)  # noqa: DTZ007 - zone attached below
        except ValueError:
            continue
        when = naive.replace(tzinfo=zone)
        if not _EARLIEST <= when < _LATEST:
            raise FilterError(N_("%(field)s: %(value)s is out of range."), field=name, value=raw)
        return int(when.timestamp()) * 1_000_000
    raise FilterError(
        N_(
            "%(field)s: %(value)s is not a time. Use YYYY-MM-DDTHH:MM, "
            "or an age such as 15m, 24h or 7d."
        ),
        field=name,
        value=raw[:40],
    )


def _text(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if len(value) > _MAX_TEXT[name]:
        raise FilterError(
            N_("%(field)s: at most %(limit)s characters."), field=name, limit=_MAX_TEXT[name]
        )
    if any(ord(ch) < 32 for ch in value):
        raise FilterError(N_("%(field)s: control characters are not allowed."), field=name)
    return value


def _kinds(raw: str) -> tuple[str, ...]:
    if not raw:
        return ()
    if raw in EVENT_KINDS:
        return (raw,)
    if raw.endswith("."):
        found = kind_domains().get(raw[:-1])
        if found:
            return tuple(found)
    raise FilterError(N_("kind: %(value)s is not a known event kind."), value=raw[:64])


def parse_activity_filter(
    params: Mapping[str, str],
    *,
    timezone: str,
    now_us: int,
    default_since: str = LOGS_DEFAULT_SINCE,
    max_days: int = LOGS_MAX_DAYS,
    paged: bool = True,
    kinds: bool = True,
) -> ActivityFilter:
    """The filter a query string asks for. Raises FilterError on bad input.

    ``paged``/``kinds``: whether ``page`` and ``kind``/``q`` are read (the reports
    take neither)."""
    zone = zoneinfo.ZoneInfo(timezone)
    since = params.get("since", "").strip() or default_since
    until = params.get("until", "").strip()
    since_us = _parse_time("since", since, zone, now_us)
    until_us = _parse_time("until", until, zone, now_us) if until else now_us + 60_000_000
    if until_us <= since_us:
        raise FilterError(N_("The end of the period must be after its start."))
    if until_us - since_us > (max_days + 1) * 86_400_000_000:
        raise FilterError(N_("The period is at most %(days)s days."), days=max_days)
    page = 1
    if paged:
        raw_page = params.get("page", "").strip() or "1"
        if not raw_page.isdigit() or len(raw_page) > 6 or int(raw_page) < 1:
            raise FilterError(N_("page: %(value)s is not a page number."), value=raw_page[:20])
        page = int(raw_page)
        if page > MAX_PAGE:
            raise FilterError(
                N_("Only the first %(pages)s pages can be shown; narrow the search."),
                pages=MAX_PAGE,
            )
    kind = params.get("kind", "").strip() if kinds else ""
    return ActivityFilter(
        since_us=since_us,
        until_us=until_us,
        since=since,
        until=until,
        device=_text(params, "device"),
        group=_text(params, "group"),
        user=_text(params, "user"),
        kind=kind,
        kinds=_kinds(kind),
        q=_text(params, "q") if kinds else "",
        page=page,
    )
