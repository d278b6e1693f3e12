"""A policy diff in the administrator's words: each changed setting's name as the
editor labels it, and its old and new values as a person reads them ("On", "30
days", "the agent's own setting") rather than JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sekimori.server.console.i18n import N_, gettext
from sekimori.server.console.policy_form import DAYS
from sekimori.server.policies import Change

__all__ = ["COLLECTOR_LABELS", "RETENTION_LABELS", "ChangeRow", "describe_changes"]

COLLECTOR_LABELS: dict[str, str] = {
    "inventory": N_("Software and hardware inventory"),
    "processes": N_("Programs started"),
    "network": N_("Network connections"),
    "web": N_("Web browsing"),
    "files": N_("File operations"),
    "window": N_("Application use and window titles"),
    "devices": N_("USB devices and media"),
    "sessions": N_("Logons and sessions"),
    "printing": N_("Printing"),
    "screens": N_("Screen recording"),
}
RETENTION_LABELS: dict[str, str] = {
    "agent": N_("Agent events"),
    "device": N_("USB devices and media"),
    "file": N_("File operations"),
    "inventory": N_("Software and hardware inventory"),
    "network": N_("Network connections"),
    "printing": N_("Printing"),
    "process": N_("Programs started"),
    "screen": N_("Screenshots"),
    "session": N_("Logons and sessions"),
    "web": N_("Web browsing"),
    "window": N_("Application use and window titles"),
}
_LABELS: dict[str, str] = {
    "privacy.record_window_titles": N_("Record window titles"),
    "privacy.mask_urls_to_domain": N_("Record web addresses as their domain only"),
    "privacy.working_hours_only": N_("Collect during working hours only"),
    "privacy.working_hours_only.days": N_("Working hours: days"),
    "privacy.working_hours_only.from": N_("Working hours: from"),
    "privacy.working_hours_only.to": N_("Working hours: to"),
    "privacy.working_hours_only.timezone": N_("Working hours: time zone"),
    "notice_mode.enabled": N_("Tell the PC's user that it is monitored"),
    "notice_mode.text_ja": N_("Notice text (Japanese)"),
    "notice_mode.text_en": N_("Notice text (English)"),
    "excluded_applications": N_("Applications never recorded"),
    "excluded_domains": N_("Web domains never recorded"),
    "live_view.mode": N_("Live view of the screen"),
    "live_view.consent_timeout_seconds": N_("Live view: seconds the user has to answer"),
    "live_view.max_minutes": N_("Live view: longest session (minutes)"),
}
LIVE_VIEW_MODES: dict[str, str] = {
    "off": N_("Not allowed"),
    "allowed": N_("Allowed (the user sees an indicator)"),
    "consent": N_("Allowed with the user's consent"),
}
_DAY_LABELS = dict(DAYS)


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One line of the diff table."""

    path: str
    label: str
    old: str
    new: str


def _label(path: str) -> str:
    parts = path.split(".")
    if parts[0] == "collectors" and len(parts) == 3:
        what = gettext(COLLECTOR_LABELS.get(parts[1], parts[1]))
        setting = gettext(N_("collected")) if parts[2] == "enabled" else parts[2]
        return f"{what}: {setting}"
    if parts[0] == "retention_days" and len(parts) == 2:
        what = gettext(RETENTION_LABELS.get(parts[1], parts[1]))
        return gettext(N_("Retention: %(what)s")) % {"what": what}
    return gettext(_LABELS[path]) if path in _LABELS else path


def _none(path: str) -> str:
    if path.startswith("collectors."):
        return gettext(N_("the agent's own setting"))
    if path.startswith("retention_days."):
        return gettext(N_("no limit"))
    return "—"


def _value(path: str, value: Any) -> str:
    if value is None:
        return _none(path)
    if isinstance(value, bool):
        return gettext(N_("On")) if value else gettext(N_("Off"))
    if path == "live_view.mode" and value in LIVE_VIEW_MODES:
        return gettext(LIVE_VIEW_MODES[value])
    if path.startswith("retention_days.") and isinstance(value, int):
        return gettext(N_("%(n)s days")) % {"n": value}
    if path == "privacy.working_hours_only.days" and isinstance(value, list):
        return " ".join(gettext(_DAY_LABELS.get(str(d), str(d))) for d in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else gettext(N_("(none)"))
    if value == "":
        return "—"
    return str(value)


def describe_changes(changes: Sequence[Change]) -> list[ChangeRow]:
    """The rows of ``changes`` in the active language. Switching working hours on or
    off gets a row of its own (the diff itself lists only the days and times)."""
    rows = []
    for c in changes:
        if c.path == "privacy.working_hours_only.days" and (c.old is None or c.new is None):
            rows.append(
                ChangeRow(
                    "privacy.working_hours_only",
                    _label("privacy.working_hours_only"),
                    _value("", c.old is not None),
                    _value("", c.new is not None),
                )
            )
        rows.append(ChangeRow(c.path, _label(c.path), _value(c.path, c.old), _value(c.path, c.new)))
    return rows
