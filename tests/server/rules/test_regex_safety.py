"""Regexes that can backtrack for exponential time are refused when a rule is loaded
or a Sigma rule imported; ordinary ones pass."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.server.rules import RuleSyntaxError, SigmaImportError, import_sigma, load_rules
from sekimori.server.rules.regex_safety import nested_repetition

DANGEROUS = [
    r"(a+)+$",
    r"(a*)*b",
    r"(\w+\s?)*x",
    r"((ab)*c)+",
    r"(x|y+)+z",
    r"(a{2,})+",
    r"(?:.*,)*q",
]
FINE = [
    r"/admin/[0-9]+/",
    r"^/usr/(s?bin)/(nc|ncat)$",
    r"(ab)+",
    r"(a{1,3}){2}",
    r"(?>a+)+b",
    r"(a++)+b",
    r"\d{1,5}\.\d+",
]


@pytest.mark.parametrize("pattern", DANGEROUS)
def test_nested_unbounded_repetition_is_found(pattern: str) -> None:
    assert nested_repetition(pattern)


@pytest.mark.parametrize("pattern", FINE)
def test_ordinary_patterns_pass(pattern: str) -> None:
    assert not nested_repetition(pattern)


def _rule(pattern: str) -> str:
    return (
        "- id: t.regex\n  title: T\n  severity: low\n  kinds: [web.visit]\n"
        f"  match:\n    url: {{regex: '{pattern}'}}\n"
    )


def test_a_rule_with_a_nested_repetition_is_refused_at_its_line() -> None:
    with pytest.raises(RuleSyntaxError, match=r"line 6.*repeats a repetition"):
        load_rules(_rule("(a+)+$"))
    assert load_rules(_rule("/admin/[0-9]+/"))[0].id == "t.regex"


def test_a_sigma_rule_with_a_nested_repetition_is_not_imported() -> None:
    text = (
        "title: Nested\nid: 8b4f0c2e-2f0e-4a53-9b0c-1d2e3f405060\nstatus: test\n"
        "logsource: {category: process_creation, product: linux}\n"
        "detection:\n  sel:\n    CommandLine|re: '(a+)+$'\n  condition: sel\nlevel: low\n"
    )
    with pytest.raises(SigmaImportError, match="repeats a repetition"):
        import_sigma(text)


@given(st.text(alphabet="ab()+*?|{}0123,", max_size=12))
def test_any_pattern_is_judged_alike_inside_a_group_and_repeated_if_unbounded(
    pattern: str,
) -> None:
    try:
        re.compile(pattern)
    except re.error:
        with pytest.raises(re.error):
            nested_repetition(pattern)
        return
    # A group changes nothing; repeating a pattern that holds an unbounded
    # repetition makes it nested.
    assert nested_repetition(f"(?:{pattern})") == nested_repetition(pattern)
    assert nested_repetition(f"(?:{pattern}b+)+") is True
