"""The YAML rule language: what it accepts, and errors that point at the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.protocol.events.file import FileModified
from sekimori.protocol.events.network import Connection, NetworkConnections
from sekimori.protocol.events.process import ProcessStarted
from sekimori.protocol.events.web import WebVisit
from sekimori.server.rules import RuleSet, RuleSyntaxError, load_rule_file, load_rules
from sekimori.server.rules.language import parse_duration
from tests.server.rules.helpers import WORKDAY_US, event

HEADER = "- id: r1\n  title: T\n  severity: high\n  kinds: [web.visit]\n"


def error(text: str) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as caught:
        load_rules(text, "rule.yaml")
    return caught.value


def visit(url: str, host: str = "www.example.com") -> WebVisit:
    return WebVisit(url=url, title="Example", host=host, browser="firefox", profile="default")


def matches(
    rule_text: str, *events: object, lists: dict[str, list[str]] | None = None
) -> list[bool]:
    rules = RuleSet(load_rules(rule_text, "rule.yaml"), lists)
    return [bool(rules.evaluate(e)) for e in events]  # type: ignore[arg-type]


def test_a_misspelt_operator_names_line_column_and_the_operators(tmp_path: Path) -> None:
    path = tmp_path / "rule.yaml"
    path.write_text(HEADER + "  match:\n    url:\n      contians: casino\n")
    with pytest.raises(RuleSyntaxError) as caught:
        load_rule_file(path)
    e = caught.value
    assert (e.source, e.line, e.column) == ("rule.yaml", 7, 7)
    assert str(e).startswith("rule.yaml line 7, column 7: 'contians' is not an operator")
    assert "expected one of equals, not_equals, contains" in str(e)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (HEADER + "  match:\n    uri: {contains: x}\n", 6, "web.visit has no field 'uri'"),
        (HEADER + "  match:\n    browser: safari\n", 6, "'safari' is not a value of browser"),
        (HEADER + "  match:\n    masked: {contains: x}\n", 6, "contains applies to text"),
        (HEADER + "  match:\n    url: {gt: 3}\n", 6, "url is not a number"),
        (HEADER + "  match:\n    url: {regex: '(unclosed'}\n", 6, "does not compile"),
        (HEADER + f"  match:\n    url: {{regex: '{'a' * 513}'}}\n", 6, "longer than 512"),
        (HEADER + "  match:\n    url: [a, b]\n", 6, "write in: [...]"),
        (HEADER + "  match:\n    host: {cidr: [10.0.0.300/8]}\n", 6, "not an address"),
        (HEADER + "  severity2: low\n", 5, "'severity2' is not a rule key"),
        (HEADER.replace("high", "urgent"), 3, "severity 'urgent'"),
        (HEADER.replace("web.visit", "web.visits"), 4, "'web.visits' is not an event kind"),
        (HEADER + "  match:\n    url: {contains: a}\n    url: {contains: b}\n", 7, "given twice"),
        (HEADER + "  threshold: {count: 0, within: 5m}\n", 5, "count must be"),
        (HEADER + "  threshold: {count: 5, within: 5 minutes}\n", 5, "not a duration"),
        (HEADER + "  threshold: {count: 5, within: 5m, by: [nope]}\n", 5, "no field 'nope'"),
        (HEADER + "  schedule: {outside: {from: '08:00', to: '25:00'}}\n", 5, "not a time"),
        (
            HEADER + "  schedule: {outside: {days: [mon..fry], from: '8:00', to: '9:00'}}\n",
            5,
            "'mon..fry' is not a day",
        ),
        (
            HEADER + "  schedule: {inside: {from: '8:00', to: '9:00'}, timezone: Mars/Base}\n",
            5,
            "not a time zone",
        ),
        (
            HEADER + "  match: &a {url: {contains: x}}\n- id: r2\n  title: T\n  severity: low\n"
            "  kinds: [web.visit]\n  match: *a\n",
            10,
            "aliases are not allowed",
        ),
        (HEADER + HEADER, 5, "rule id 'r1' is used twice"),
        ("- id: r1\n  title: T\n  severity: low\n", 1, "the rule has no 'kinds'"),
        (HEADER + "  match:\n    url: {contains: x\n", 7, "not valid YAML"),
    ],
)
def test_errors_point_at_the_line(text: str, line: int, fragment: str) -> None:
    e = error(text)
    assert e.line == line, str(e)
    assert fragment in str(e)


def test_list_fields_need_a_star_and_structs_need_a_field() -> None:
    kinds = HEADER.replace("web.visit", "network.connections")
    assert "write connections[*]" in str(error(kinds + "  match:\n    connections: {equals: x}\n"))
    text = kinds + "  match:\n    connections[*]: {equals: x}\n"
    assert "is a group of fields; name one of: pid, exe" in str(error(text))


def test_operators_on_real_events() -> None:
    header = "- id: r\n  title: T\n  severity: low\n  kinds: [web.visit]\n  match:\n"
    casino = event(visit("https://casino.example.net/play?x=1", "casino.example.net"))
    docs = event(visit("https://docs.python.org/3/", "docs.python.org"))
    cases = {
        "url: {equals: 'https://docs.python.org/3/'}": [False, True],
        "url: 'https://docs.python.org/3/'": [False, True],
        "host: {not_equals: docs.python.org}": [True, False],
        "url: {contains: casino}": [True, False],
        "url: {startswith: 'https://docs.'}": [False, True],
        "url: {endswith: /3/}": [False, True],
        "url: {regex: 'play\\?x=[0-9]+$'}": [True, False],
        "host: {in: [docs.python.org, pypi.org]}": [False, True],
        "host: {in: {list: gambling}}": [True, False],
        "host: {domain_in: [example.net]}": [True, False],
        "all: [{url: {contains: casino}}, {browser: firefox}]": [True, False],
        "any: [{url: {contains: casino}}, {host: docs.python.org}]": [True, True],
        "not: {url: {contains: casino}}": [False, True],
        "kind: web.visit": [True, True],
        "os_user: alice": [True, True],
        "device.group: {in: [lab]}": [False, False],
    }
    for condition, expected in cases.items():
        got = matches(
            header + "    " + condition + "\n",
            casino,
            docs,
            lists={"gambling": ["casino.example.net"]},
        )
        assert got == expected, condition


def test_numeric_and_cidr_operators() -> None:
    header = "- id: r\n  title: T\n  severity: low\n  kinds: [file.modified]\n  match:\n"
    big, small, unknown = (event(FileModified(path="/a", size=s)) for s in (5_000_000, 10, None))
    for condition, expected in {
        "size: {gt: 1000000}": [True, False, False],
        "size: {gte: 10}": [True, True, False],
        "size: {lt: 10}": [False, False, False],
        "size: {lte: 10}": [False, True, False],
        "size: {equals: null}": [False, False, True],
        "size: {not_equals: null}": [True, True, False],
    }.items():
        assert matches(header + "    " + condition + "\n", big, small, unknown) == expected
    net = "- id: r\n  title: T\n  severity: low\n  kinds: [network.connections]\n  match:\n"

    def summary(address: str, port: int) -> object:
        c = Connection(
            pid=1,
            exe="/usr/bin/ssh",
            user="bob",
            protocol="tcp",
            remote_address=address,
            remote_port=port,
            local_ports=[50000],
            count=1,
            first_seen_us=0,
            last_seen_us=0,
        )
        return event(NetworkConnections(period_start_us=0, period_end_us=1, connections=[c]))

    inside, outside = summary("10.1.2.3", 22), summary("192.0.2.1", 443)
    cond = "    connections[*].remote_address: {cidr: [10.0.0.0/8, 'fd00::/8']}\n"
    assert matches(net + cond, inside, outside) == [True, False]
    cond = "    connections[*].remote_port: {in: [22, 3389]}\n"
    assert matches(net + cond, inside, outside) == [True, False]


def test_argv_elements_and_unquoted_working_hours() -> None:
    text = (
        "- id: r\n  title: T\n  severity: low\n  kinds: [process.started]\n"
        "  match:\n    argv[*]: {equals: --no-sandbox}\n"
        "  schedule:\n    inside: {days: [mon-fri], from: 08:00, to: 20:00}\n"
        "    timezone: Asia/Tokyo\n"
    )
    proc = ProcessStarted(
        pid=10,
        ppid=1,
        name="chrome",
        exe="/opt/chrome",
        argv=["chrome", "--no-sandbox"],
        user="alice",
        uid=1000,
        start_time_us=0,
        hash_status="ok",
    )
    assert matches(text, event(proc), event(proc, time_us=WORKDAY_US + 12 * 3600 * 10**6)) == [
        True,
        False,
    ]


def test_groups_scope_and_disabled_rules() -> None:
    text = HEADER + "  groups: [sales]\n  match:\n    url: {contains: x}\n"
    e = event(visit("https://x.example/"))
    assert matches(text, e, event(visit("https://x.example/"), group="sales")) == [False, True]
    off = HEADER + "  enabled: false\n"
    assert matches(off, e) == [False]


def test_durations() -> None:
    assert parse_duration("90s") == 90_000_000
    assert parse_duration("5m") == 300_000_000
    assert parse_duration("2h") == 7_200_000_000
    assert parse_duration("1d") == 86_400_000_000


@given(st.text(max_size=300))
def test_any_text_loads_or_fails_with_a_rule_syntax_error(text: str) -> None:
    try:
        load_rules(text, "fuzz.yaml")
    except RuleSyntaxError as e:
        assert str(e).startswith("fuzz.yaml")


_OPS = st.sampled_from(["equals", "contains", "regex", "in", "gt", "cidr", "contians", "all"])
_VALUES = st.sampled_from(["x", "'(a'", "[1, 2]", "{list: l}", "3", "null", "[10.0.0.0/8]", "{}"])
_PATHS = st.sampled_from(["url", "host", "masked", "nope", "kind", "a.b", "url[*]"])


@given(_PATHS, _OPS, _VALUES)
def test_generated_conditions_load_or_fail_with_a_line(path: str, op: str, value: str) -> None:
    text = HEADER + f"  match:\n    {path}: {{{op}: {value}}}\n"
    try:
        load_rules(text, "gen.yaml")
    except RuleSyntaxError as e:
        assert e.line >= 5
