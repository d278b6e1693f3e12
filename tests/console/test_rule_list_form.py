"""Lists typed or uploaded in the console: any text is either a list of entries or an
error naming a real line; normalized entries read back as themselves."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.server.console.rule_list_form import (
    ListEntryError,
    check_list_name,
    decode_text_upload,
    list_entries,
)
from sekimori.server.store.rule_config import MAX_ENTRY_CHARS

LISTS = ("blocked_addresses", "blocked_domains", "banned_software")

_addresses = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).flatmap(
        lambda a: st.integers(0, 32).map(
            lambda p: str(ipaddress.ip_network(f"{a}/{p}", strict=False))
        )
    ),
    st.ip_addresses(v=6).flatmap(
        lambda a: st.integers(0, 128).map(
            lambda p: str(ipaddress.ip_network(f"{a}/{p}", strict=False))
        )
    ),
)
_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_domains = st.lists(_labels, min_size=1, max_size=5).map(".".join)


def _decorate(entries: list[str], pad: str, comment: bool) -> str:
    lines = [f"{pad}{e}{pad}" for e in entries]
    if comment:
        lines.insert(0, "# managed by the security team")
        lines.append("")
    return "\r\n".join(lines)


@given(st.lists(_addresses, max_size=30), st.sampled_from(["", " ", "\t"]), st.booleans())
def test_addresses_and_networks_read_back_as_themselves(
    entries: list[str], pad: str, comment: bool
) -> None:
    parsed = list_entries("blocked_addresses", _decorate(entries, pad, comment))
    assert parsed == list(dict.fromkeys(entries))
    assert list_entries("blocked_addresses", "\n".join(parsed)) == parsed


@given(st.lists(_domains, max_size=30), st.booleans(), st.booleans())
def test_domains_are_lower_cased_and_read_back_as_themselves(
    entries: list[str], upper: bool, dot: bool
) -> None:
    typed = [(e.upper() if upper else e) + ("." if dot else "") for e in entries]
    parsed = list_entries("blocked_domains", "\n".join(typed))
    assert parsed == list(dict.fromkeys(entries))
    assert list_entries("blocked_domains", "\n".join(parsed)) == parsed


@given(st.sampled_from(LISTS), st.text(max_size=400))
def test_any_text_is_a_list_or_an_error_on_a_real_line(name: str, text: str) -> None:
    try:
        parsed = list_entries(name, text)
    except ListEntryError as exc:
        assert 1 <= exc.line <= len(text.splitlines())
        assert str(exc).startswith(f"Line {exc.line}: ")
        return
    assert all(e and e == e.strip() and not e.startswith("#") for e in parsed)
    assert len(set(parsed)) == len(parsed)


@given(st.binary(max_size=300))
def test_an_upload_is_utf8_text_or_an_error_on_a_real_line(data: bytes) -> None:
    try:
        text = decode_text_upload(data)
    except ListEntryError as exc:
        assert 1 <= exc.line <= data.count(b"\n") + 1
        return
    assert text.encode("utf-8") in (data, data[3:])


@pytest.mark.parametrize(
    ("name", "text", "line", "says"),
    [
        ("blocked_addresses", "10.0.0.1\n10.0.0.0/33", 2, "is not an IP address or network"),
        ("blocked_addresses", "fe80::1%eth0", 1, "is not an IP address or network"),
        ("blocked_addresses", "# ok\n10.1.2.3/8", 2, "write the network 10.0.0.0/8"),
        ("blocked_domains", "a.example\n\nhttp://b.example", 3, "is a URL"),
        ("blocked_domains", "*.b.example", 1, "write b.example instead of *.b.example"),
        ("blocked_domains", "bad..example", 1, "is not a domain name"),
        ("blocked_domains", "-bad.example", 1, "is not a domain name"),
        ("banned_software", "ok\n" + "x" * (MAX_ENTRY_CHARS + 1), 2, "at most 1024 characters"),
        ("banned_software", "ok\nnul\x00here", 2, "NUL character"),
    ],
)
def test_bad_entries_are_refused_naming_their_line(
    name: str, text: str, line: int, says: str
) -> None:
    with pytest.raises(ListEntryError) as refused:
        list_entries(name, text)
    assert refused.value.line == line
    assert says in str(refused.value)


def test_international_domains_are_stored_as_browsers_report_them() -> None:
    assert list_entries("blocked_domains", "例え.jp\nXN--R8JZ45G.jp") == ["xn--r8jz45g.jp"]


def test_list_names() -> None:
    for good in ("blocked_domains", "gambling", "a", "sites-2025.v1"):
        assert check_list_name(good) == good
    for bad in ("", "new", "Upper", "-x", "a b", "x" * 65, "../etc"):
        with pytest.raises(ValueError):
            check_list_name(bad)
