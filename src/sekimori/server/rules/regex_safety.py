"""Refusing regular expressions that can backtrack for exponential time (ReDoS).

Rules run in the ingest writer, on text the monitored PCs send (window titles, URLs,
command lines). Python's ``re`` backtracks, so a pattern such as ``(a+)+$`` or
``(\\w+\\s?)*x`` can take seconds or hours on a crafted 40-character title, and every
agent's ingest waits meanwhile. Rules come from administrators and from imported
Sigma rules (text from outside): a mistake in either must not become a way to stall
the server.

The check refuses the shape behind almost every such blow-up: an unbounded repetition
(``*``, ``+``, ``{n,}``) inside another repetition. Possessive repetitions and atomic
groups do not backtrack and are allowed. It reads the pattern with the standard
library's own parser (``re._parser``: private, but the parser ``re.compile`` uses, so
both see the same pattern).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["nested_repetition"]

_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

_BACKTRACKING_REPEATS = (_c.MAX_REPEAT, _c.MIN_REPEAT)
# More repetitions than this count as unbounded (x{1,1000} nests like x+).
_BOUNDED = 16


def nested_repetition(pattern: str, flags: int = 0) -> bool:
    """Whether ``pattern`` has an unbounded repetition inside a repetition. Raises
    re.error for a pattern that does not compile."""
    return _walk(_parser.parse(pattern, flags), inside=False)


def _walk(items: Any, *, inside: bool) -> bool:
    for op, av in items:
        if op in _BACKTRACKING_REPEATS:
            _low, high, sub = av
            unbounded = high == _c.MAXREPEAT or high > _BOUNDED
            if inside and unbounded:
                return True
            if _walk(sub, inside=inside or high > 1):
                return True
        elif op == _c.SUBPATTERN:
            if _walk(av[3], inside=inside):
                return True
        elif op == _c.BRANCH:
            if any(_walk(branch, inside=inside) for branch in av[1]):
                return True
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            if _walk(av[1], inside=inside):
                return True
        elif op == _c.GROUPREF_EXISTS:
            _group, yes, no = av
            if _walk(yes, inside=inside) or (no is not None and _walk(no, inside=inside)):
                return True
        # POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack into: nothing nests there.
    return False
