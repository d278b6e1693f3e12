"""The errors of the rule language, the rule set and the Sigma import.

Every one is permanent: the same input fails the same way, so retrying cannot help;
the message says what to change.

    RuleError                      base: anything wrong with a rule or its inputs
    ├── RuleSyntaxError            a rule file: which source, line, column, and why
    ├── UnknownListError           a rule names a list the caller did not supply
    ├── SigmaImportError           a Sigma rule this evaluator cannot take (logsource,
    │                              modifier, or no field it can see)
    └── ThresholdStateError        exported threshold state that cannot be imported
"""

from __future__ import annotations

__all__ = [
    "RuleError",
    "RuleSyntaxError",
    "SigmaImportError",
    "ThresholdStateError",
    "UnknownListError",
]


class RuleError(Exception):
    """Base of the rules package's errors. Always permanent (``retryable`` is False)."""

    retryable = False


class RuleSyntaxError(RuleError):
    """A rule file is not valid. ``line`` and ``column`` are 1-based (0 when unknown)."""

    def __init__(self, source: str, line: int, column: int, message: str) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.message = message
        where = f"{source} line {line}, column {column}" if line else source
        super().__init__(f"{where}: {message}")


class UnknownListError(RuleError):
    """A rule refers to a named list (``in: {list: name}``) that was not supplied."""

    def __init__(self, rule_id: str, list_name: str, source: str, line: int) -> None:
        self.rule_id = rule_id
        self.list_name = list_name
        super().__init__(
            f"{source} line {line}: rule {rule_id!r} uses the list {list_name!r}, "
            "which does not exist"
        )


class SigmaImportError(RuleError):
    """A Sigma rule cannot be imported (or pySigma refused it); the message says why."""


class ThresholdStateError(RuleError):
    """Threshold state given to ``ThresholdTracker.from_state`` is not what it exported."""
