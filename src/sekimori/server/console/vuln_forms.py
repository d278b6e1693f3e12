"""The exception (accepted finding) form: its fields as typed, and their errors.

An expiry is a calendar date in the console's time zone; the exception holds through
that whole day (it ends at the next midnight there).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sekimori.server.console.i18n import gettext
from sekimori.server.store.vulns import VulnException

__all__ = ["MAX_EXPIRY_DAYS", "ExceptionForm", "exception_form_from", "expiry_day"]

MAX_EXPIRY_DAYS: Final = 3 * 366
MAX_REASON: Final = 2000
_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VULN_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def expiry_day(text: str, timezone: str) -> int:
    """The end of the day ``text`` (YYYY-MM-DD) in ``timezone``, in µs UTC. Raises
    ValueError for anything else."""
    if not _DATE.match(text):
        raise ValueError(text)
    day = dt.date.fromisoformat(text) + dt.timedelta(days=1)
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=zoneinfo.ZoneInfo(timezone))
    return int(midnight.timestamp()) * 1_000_000


def _date_of(expires_us: int, timezone: str) -> str:
    """The last day an expiry covers (the inverse of expiry_day)."""
    moment = dt.datetime.fromtimestamp((expires_us - 1) / 1_000_000, tz=zoneinfo.ZoneInfo(timezone))
    return moment.date().isoformat()


@dataclass(frozen=True, slots=True)
class ExceptionForm:
    vuln_id: str
    target: str  # device | group
    device_id: str
    group_id: str
    package: str
    reason: str
    expires: str

    @classmethod
    def of(cls, e: VulnException, timezone: str) -> ExceptionForm:
        return cls(
            vuln_id=e.vuln_id,
            target="device" if e.device_id else "group",
            device_id=e.device_id or "",
            group_id="" if e.group_id is None else str(e.group_id),
            package=e.package or "",
            reason=e.reason,
            expires=_date_of(e.expires_us, timezone),
        )

    def with_edits(self, *, reason: str, expires: str) -> ExceptionForm:
        return dataclasses.replace(self, reason=reason.strip(), expires=expires.strip())

    def errors(self, now_us: int, timezone: str) -> dict[str, str]:
        """Field name → message, for every field that is wrong (empty: valid)."""
        errors: dict[str, str] = {}
        if not _VULN_ID.match(self.vuln_id):
            errors["vuln_id"] = gettext("Enter a vulnerability id, such as CVE-2024-3094.")
        if self.target == "device":
            if not self.device_id:
                errors["device_id"] = gettext("Choose the device.")
        elif self.target == "group":
            if not self.group_id.isdigit():
                errors["group_id"] = gettext("Choose the group.")
        else:
            errors["target"] = gettext("Choose a device or a group.")
        if len(self.package) > 255:
            errors["package"] = gettext("A package name is at most 255 characters.")
        if not self.reason:
            errors["reason"] = gettext("Give the reason the risk is accepted.")
        elif len(self.reason) > MAX_REASON:
            errors["reason"] = gettext("The reason is at most %(n)d characters.") % {
                "n": MAX_REASON
            }
        try:
            expires = expiry_day(self.expires, timezone)
        except ValueError:
            errors["expires"] = gettext("Enter the expiry date (YYYY-MM-DD).")
        else:
            if expires <= now_us:
                errors["expires"] = gettext("The expiry date must be in the future.")
            elif expires > now_us + MAX_EXPIRY_DAYS * 86_400_000_000:
                errors["expires"] = gettext("An exception lasts at most three years.")
        return errors


def exception_form_from(field: Callable[[str], str]) -> ExceptionForm:
    """The form as posted (``field``: PageContext.field)."""
    target = field("target")
    return ExceptionForm(
        vuln_id=field("vuln_id").strip()[:128],
        target=target if target in ("device", "group") else "",
        device_id=field("device_id").strip()[:64],
        group_id=field("group_id").strip()[:16],
        package=field("package").strip()[:256],
        reason=field("reason").strip()[: MAX_REASON + 1],
        expires=field("expires").strip()[:32],
    )
