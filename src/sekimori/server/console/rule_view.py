"""What the rules pages show, computed from the stored rule configuration: one row per
rule (titles of the built-in rules in the console's language), a refused source's error
with the lines around it, which rules use a list, and what a list change would break.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Final, Literal

from sekimori.server.alerting.ruleset import BuiltRules, build_rules, compile_rules
from sekimori.server.alerting.state_rules import STATE_RULES
from sekimori.server.console.i18n import N_, gettext
from sekimori.server.rules import RuleError, RuleSyntaxError
from sekimori.server.store.rule_config import RuleConfig

__all__ = [
    "BUILTIN_TITLES",
    "LIST_HINTS",
    "RuleRow",
    "SourceError",
    "SourceLine",
    "list_change_problems",
    "list_users",
    "rule_rows",
    "rule_title",
    "source_error",
]

# The built-in pack's titles, for the catalog (the pack's YAML is English). A test
# keeps this table equal to the pack.
BUILTIN_TITLES: Final[dict[str, str]] = {
    "builtin.usb_mass_storage_attached": N_("USB mass-storage device attached"),
    "builtin.file_copied_to_removable": N_("File copied to removable media"),
    "builtin.mass_file_deletion": N_("Mass file deletion"),
    "builtin.outbound_to_listed_address": N_("Outbound connection to a listed address"),
    "builtin.logon_outside_working_hours": N_("Logon outside working hours"),
    "builtin.software_installed": N_("New software installed"),
    "builtin.banned_software_installed": N_("Banned software installed"),
    "builtin.banned_software_present": N_("Banned software present"),
    "builtin.blocked_domain_access": N_("Access to a blocked domain"),
    # The device-state rules (alerting/state_rules.py).
    "builtin.agent_offline": N_("Agent offline"),
    "builtin.agent_outdated": N_("Agent older than the minimum version"),
    "builtin.known_exploited_vulnerability": N_("Known-exploited vulnerability on a PC"),
}
# What each built-in list holds, for the lists page.
LIST_HINTS: Final[dict[str, str]] = {
    "blocked_domains": N_("Domains; each also covers its subdomains (example.com)."),
    "banned_software": N_("Package names, as in a PC's software list."),
    "blocked_addresses": N_("IP addresses and networks (203.0.113.7, 198.51.100.0/24)."),
}
_LINE_IN_MESSAGE: Final = re.compile(r"\bline (\d+)")


Origin = Literal["builtin", "custom", "sigma", "state"]


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: str
    title: str
    description: str
    severity: str
    kinds: tuple[str, ...]
    origin: Origin
    # The custom source a custom or Sigma rule came from.
    source: str | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class SourceLine:
    number: int
    text: str
    error: bool


@dataclass(frozen=True, slots=True)
class SourceError:
    """A source refused on save: the message, and the lines around the one at fault."""

    message: str
    line: int
    excerpt: tuple[SourceLine, ...]


def rule_title(rule_id: str, title: str) -> str:
    return gettext(BUILTIN_TITLES[rule_id]) if rule_id in BUILTIN_TITLES else title


def rule_rows(built: BuiltRules, config: RuleConfig) -> list[RuleRow]:
    formats = {c.name: c.format for c in config.custom}
    rows: list[RuleRow] = []
    for rule in built.rules:
        source = built.origin.get(rule.id)
        origin: Origin = (
            "builtin" if source is None else "sigma" if formats.get(source) == "sigma" else "custom"
        )
        rows.append(
            RuleRow(
                id=rule.id,
                title=rule_title(rule.id, rule.title),
                description=rule.description,
                severity=rule.severity,
                kinds=rule.kinds,
                origin=origin,
                source=source,
                enabled=rule.enabled,
            )
        )
    # The device-state rules (agent offline, agent outdated): switched in the same
    # table as the others.
    for state in STATE_RULES:
        rule_id = state.id
        rows.append(
            RuleRow(
                id=rule_id,
                title=rule_title(rule_id, state.title),
                description=state.description,
                severity=state.severity,
                kinds=(),
                origin="state",
                source=None,
                enabled=config.enabled.get(rule_id, state.enabled),
            )
        )
    return rows


def source_error(exc: RuleError, source: str) -> SourceError:
    if isinstance(exc, RuleSyntaxError) and exc.line:
        line = exc.line
        message = gettext("Line %(line)s, column %(column)s: %(message)s") % {
            "line": exc.line,
            "column": exc.column,
            "message": exc.message,
        }
    else:
        found = _LINE_IN_MESSAGE.search(str(exc))
        line = int(found.group(1)) if found else 0
        message = str(exc)
    lines = source.splitlines()
    excerpt: tuple[SourceLine, ...] = ()
    if 0 < line <= len(lines):
        first, last = max(1, line - 3), min(len(lines), line + 3)
        excerpt = tuple(SourceLine(n, lines[n - 1], n == line) for n in range(first, last + 1))
    return SourceError(message, line, excerpt)


def list_users(built: BuiltRules) -> dict[str, list[str]]:
    """List name -> the ids of the rules that use it."""
    users: dict[str, list[str]] = {}
    for rule in built.rules:
        for ref in rule.match.list_refs():
            users.setdefault(ref.name, [])
            if rule.id not in users[ref.name]:
                users[ref.name].append(rule.id)
    return users


def list_change_problems(config: RuleConfig, name: str, entries: list[str]) -> list[str]:
    """What breaks if list ``name`` held ``entries``: sources that would stop loading,
    or the rule set refusing to compile (a built-in rule's list)."""
    before = set(build_rules(config).errors)
    lists = {**config.lists, name: tuple(entries)}
    built = build_rules(dataclasses.replace(config, lists=lists))
    problems = [
        f"{source}: {reason}" for source, reason in built.errors if (source, reason) not in before
    ]
    try:
        compile_rules(built)
    except RuleError as exc:
        problems.append(str(exc))
    return problems
