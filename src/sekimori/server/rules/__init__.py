"""Alert rules: a YAML rule language, a built-in pack, Sigma import, and an evaluator.

What it is for: deciding, for each ingested event, which rules fire (issue 5). It is a
self-contained package with a small typed API; nothing calls it yet.

How it will be wired (next session):

* ingest builds an ``EvalEvent`` per stored event (device id, its group's name, kind,
  time, os_user, and the payload as ``msgspec.to_builtins`` of the validated struct —
  already at hand in ingest, so no JSON decoding) and calls ``RuleSet.evaluate``;
  each ``Match`` becomes (or increments) an alert.
* the ``RuleSet`` is built at start-up and rebuilt when rules or lists change:
  ``RuleSet(load_builtin_rules() + custom + [s.rule for s in sigma_imports],
  lists={name: entries}, thresholds=old.thresholds)``. The built-in pack needs the
  lists named in ``BUILTIN_LISTS`` (empty lists are fine).
* ``ThresholdTracker.export_state()`` is persisted with the ingest position it covers,
  and ``ThresholdTracker.from_state`` restores it, so a restart neither loses nor
  repeats threshold alerts. With several replicas, partition evaluation by device so
  one tracker sees all of a device's events.
* state rules — agent offline longer than N hours, agent older than the minimum
  version — are not event rules; a periodic job over the devices table will raise them.
"""

from __future__ import annotations

from typing import Final

from sekimori.server.rules._bench import BenchResult, bench_evaluate
from sekimori.server.rules.conditions import Condition, ListRef
from sekimori.server.rules.engine import Match, RuleSet
from sekimori.server.rules.errors import (
    RuleError,
    RuleSyntaxError,
    SigmaImportError,
    ThresholdStateError,
    UnknownListError,
)
from sekimori.server.rules.event import EvalEvent
from sekimori.server.rules.language import load_builtin_rules, load_rule_file, load_rules
from sekimori.server.rules.model import Rule, Schedule, Severity, Threshold
from sekimori.server.rules.sigma import SigmaImport, import_sigma, import_sigma_rules
from sekimori.server.rules.thresholds import ThresholdTracker

__all__ = [
    "BUILTIN_LISTS",
    "BenchResult",
    "Condition",
    "EvalEvent",
    "ListRef",
    "Match",
    "Rule",
    "RuleError",
    "RuleSet",
    "RuleSyntaxError",
    "Schedule",
    "Severity",
    "SigmaImport",
    "SigmaImportError",
    "Threshold",
    "ThresholdStateError",
    "ThresholdTracker",
    "UnknownListError",
    "bench_evaluate",
    "import_sigma",
    "import_sigma_rules",
    "load_builtin_rules",
    "load_rule_file",
    "load_rules",
]

# The named lists the built-in pack refers to.
BUILTIN_LISTS: Final = ("blocked_domains", "banned_software", "blocked_addresses")
