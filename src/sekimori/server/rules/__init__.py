"""Alert rules: a YAML rule language, a built-in pack, Sigma import, and an evaluator.

What it is for: deciding, for each ingested event, which rules fire (issue 5). It is a
self-contained package with a small typed API, used by ``sekimori.server.alerting``:

* the ingest writer builds an ``EvalEvent`` per newly stored event (device id, its
  group's name, kind, time, os_user, and the validated payload struct the channel
  decoded — rules read its attributes, no dictionary is built) and calls
  ``RuleSet.evaluate`` with the device's ``ThresholdTracker``; each ``Match`` opens or
  grows an alert in the same transaction (``alerting/evaluator.py``).
* the ``RuleSet`` is built from the stored configuration (``alerting/ruleset.py``:
  the built-in pack with its switches, custom YAML sources, imported Sigma rules, the
  named lists) and rebuilt when its revision moves.
* state rules (agent offline, agent older than the minimum version) are not event
  rules: a periodic job over the devices table raises them (``alerting/state_rules.py``).
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
