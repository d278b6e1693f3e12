"""From the stored rule configuration to a ``RuleSet``, and checking a custom source
before it is stored.

The rules in force are: the built-in pack (each rule switched by ``rule_settings``,
else its own ``enabled``), every custom YAML source, every imported Sigma rule. Lists
are the stored ones, with the built-in pack's lists present (empty) even when nobody
has filled them in.

A stored source that no longer loads (it was valid when saved; a later version of
Sekimori could refuse it) is left out with an error the console shows, never taking
the other rules down with it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from sekimori.server.rules import (
    BUILTIN_LISTS,
    Rule,
    RuleError,
    RuleSet,
    ThresholdTracker,
    import_sigma,
    load_builtin_rules,
    load_rules,
)
from sekimori.server.store.rule_config import RuleConfig, RuleFormat

__all__ = ["BuiltRules", "build_rules", "check_custom_source", "compile_rules"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BuiltRules:
    revision: int
    # Every rule, enabled or not, in order: built-in first, then custom by source name.
    rules: tuple[Rule, ...]
    # Which source each custom rule came from (rule id -> source name).
    origin: dict[str, str]
    lists: dict[str, tuple[str, ...]]
    # Sources that could not be loaded: (source name, reason).
    errors: tuple[tuple[str, str], ...]


def _lists(config: RuleConfig) -> dict[str, tuple[str, ...]]:
    lists: dict[str, tuple[str, ...]] = {name: () for name in BUILTIN_LISTS}
    lists.update(config.lists)
    return lists


def _load_source(format: RuleFormat, source: str, name: str) -> list[Rule]:
    if format == "sigma":
        return [import_sigma(source, name).rule]
    return load_rules(source, name)


def check_custom_source(
    format: RuleFormat,
    source: str,
    name: str,
    config: RuleConfig,
) -> list[Rule]:
    """Load a custom source as it would be stored under ``name``, and check it fits
    with the rules in force (ids unique, lists it names exist). Raises RuleError (with
    the line for YAML) or SigmaImportError; returns the rules it holds."""
    rules = _load_source(format, source, name)
    if not rules:
        raise RuleError(f"{name}: the source holds no rule")
    others = [c for c in config.custom if c.name != name]
    current = build_rules(dataclasses.replace(config, custom=tuple(others)))
    taken = {r.id: current.origin.get(r.id, "built-in") for r in current.rules}
    for rule in rules:
        if rule.id in taken:
            raise RuleError(
                f"{name} line {rule.line}: rule id {rule.id!r} is already used by {taken[rule.id]}"
            )
    # Compiling binds the lists: an unknown list name is refused here.
    RuleSet(rules, current.lists)
    return rules


def build_rules(config: RuleConfig) -> BuiltRules:
    builtin = [
        dataclasses.replace(rule, enabled=config.enabled.get(rule.id, rule.enabled))
        for rule in load_builtin_rules()
    ]
    rules: list[Rule] = list(builtin)
    origin: dict[str, str] = {}
    errors: list[tuple[str, str]] = []
    taken = {r.id for r in builtin}
    lists = _lists(config)
    for custom in config.custom:
        try:
            loaded = _load_source(custom.format, custom.source, custom.name)
            RuleSet(loaded, lists)
        except RuleError as exc:
            log.error("stored rules %r left out: %s", custom.name, exc)
            errors.append((custom.name, str(exc)))
            continue
        for rule in loaded:
            if rule.id in taken:
                errors.append((custom.name, f"rule id {rule.id!r} is used twice; left out"))
                continue
            taken.add(rule.id)
            origin[rule.id] = custom.name
            rules.append(
                dataclasses.replace(rule, enabled=config.enabled.get(rule.id, rule.enabled))
            )
    return BuiltRules(config.revision, tuple(rules), origin, lists, tuple(errors))


def compile_rules(built: BuiltRules, thresholds: ThresholdTracker | None = None) -> RuleSet:
    return RuleSet(built.rules, built.lists, thresholds)
