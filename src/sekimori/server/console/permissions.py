"""What each role may do in the console. Checked on every route, not just in menus."""

from __future__ import annotations

from typing import Final, Literal

from sekimori.server.console.i18n import N_, gettext
from sekimori.server.store.users import Role

__all__ = ["PERMISSIONS", "ROLE_LABELS", "Permission", "allowed", "role_label"]

ROLE_LABELS: Final[dict[str, str]] = {
    "administrator": N_("Administrator"),
    "operator": N_("Operator"),
    "auditor": N_("Auditor"),
    "viewer": N_("Viewer"),
}


def role_label(role: str) -> str:
    return gettext(ROLE_LABELS.get(role, role))


# dashboard: the fleet summary. devices: device list and pages (inventory, status).
# activity: what people did (logs, reports, a device's timeline) — each view audited.
# enroll: enrollment tokens and revoking devices. audit: the audit trail.
# users: console accounts. alerts: see alerts and handle them (acknowledge, resolve,
# assign, comment). rules: alert rules, their lists, Sigma imports, notifications.
# live: watch a PC's screen live (the PC's user sees an indicator; each session
# audited) — administrators only by default.
# policies: collection policies of device groups. screens: stored screen frames (the
# timeline player) — the most sensitive data; administrators only by default, every
# frame viewed is audited.
# actions: remote actions on the devices of the user's groups (each target checked),
# signed with the user's own passkey when the action needs a signature; also the
# user's own passkeys. operators: the operator keyring (which keys may sign) and its
# changes — administrators only.
# vulnerabilities: the vulnerability list and pages, a device's findings, fleet patch
# compliance and feed status, within the user's groups (administrators, operators,
# auditors; not audited, like the device inventory they come from).
# vuln_manage: accept findings (exceptions) and upload vulnerability feeds —
# administrators only (an accepted risk and the feed data are fleet-wide decisions).
Permission = Literal[
    "dashboard",
    "devices",
    "activity",
    "enroll",
    "audit",
    "users",
    "alerts",
    "rules",
    "policies",
    "screens",
    "live",
    "actions",
    "operators",
    "vulnerabilities",
    "vuln_manage",
]

PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    "administrator": frozenset(
        {
            "dashboard",
            "devices",
            "activity",
            "enroll",
            "audit",
            "users",
            "alerts",
            "rules",
            "policies",
            "screens",
            "live",
            "actions",
            "operators",
            "vulnerabilities",
            "vuln_manage",
        }
    ),
    # Operators look after devices; they see a device's activity to troubleshoot it,
    # and handle the alerts of their groups.
    "operator": frozenset(
        {"dashboard", "devices", "activity", "enroll", "alerts", "actions", "vulnerabilities"}
    ),
    # Auditors read logs, reports, the audit trail and the vulnerability posture.
    "auditor": frozenset({"dashboard", "activity", "audit", "vulnerabilities"}),
    "viewer": frozenset({"dashboard"}),
}


def allowed(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())
