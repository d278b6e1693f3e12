"""The SSRF guard: the address classifier (table and properties), resolution, and the
pinned connection (Host header and TLS name kept while the vetted IP is dialled)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.server.notify import AddressRefused, NotifyConfigError, TransportError
from sekimori.server.notify.safe_http import (
    check_url,
    parse_networks,
    post_json,
    refusal_reason,
    resolve_and_vet,
)
from tests.server.notify.conftest import HOOK_NAME, Certificate, HttpServer

LOOPBACK = parse_networks(["127.0.0.0/8"], "allow")

INTERNAL = [
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to classify, not to bind
    ("0.1.2.3", "private"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "private"),
    ("255.255.255.255", "private"),
    ("192.0.2.10", "private"),
    ("198.18.0.1", "private"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "private"),
    ("::ffff:127.0.0.1", "IPv4-mapped form of a loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped form of a private"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of a link-local"),
    ("64:ff9b::7f00:1", "NAT64 form of a loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 form of a link-local"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:c0a8:0101::1", "6to4 form of a private"),
    ("2002:7f00:1::", "6to4 form of a loopback"),
    ("::7f00:1", "IPv4-compatible form of a loopback"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "reason"), INTERNAL)
def test_internal_addresses_are_refused_with_their_kind(address: str, reason: str) -> None:
    found = refusal_reason(ipaddress.ip_address(address))
    assert found is not None
    assert found.startswith(reason)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


PRIVATE_V4 = [
    ipaddress.ip_network(net)
    for net in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "0.0.0.0/8",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@st.composite
def private_v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    net = draw(st.sampled_from(PRIVATE_V4))
    offset = draw(st.integers(0, net.num_addresses - 1))
    return ipaddress.IPv4Address(int(net.network_address) + offset)


@given(private_v4())
def test_every_address_of_the_internal_v4_ranges_is_refused(
    address: ipaddress.IPv4Address,
) -> None:
    assert refusal_reason(address) is not None


@given(private_v4())
def test_ipv6_wrappings_of_an_internal_v4_are_refused(address: ipaddress.IPv4Address) -> None:
    value = int(address)
    wrapped = [
        ipaddress.IPv6Address(0xFFFF << 32 | value),  # ::ffff:a.b.c.d
        ipaddress.IPv6Address(0x64FF9B << 96 | value),  # 64:ff9b::a.b.c.d
        ipaddress.IPv6Address(0x2002 << 112 | value << 80),  # 2002:aabb:ccdd::
    ]
    for candidate in wrapped:
        assert refusal_reason(candidate) is not None, candidate


@given(st.integers(0, 2**32 - 1))
def test_a_wrapping_is_judged_like_the_address_it_wraps(value: int) -> None:
    inner = ipaddress.IPv4Address(value)
    mapped = ipaddress.IPv6Address(0xFFFF << 32 | value)
    assert (refusal_reason(mapped) is None) == (refusal_reason(inner) is None)


def fake_resolver(*answers: str) -> Any:
    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers
        ]

    return resolve


def test_one_internal_answer_among_public_ones_refuses_the_name() -> None:
    with pytest.raises(AddressRefused) as caught:
        resolve_and_vet("mixed.example", 443, (), fake_resolver("8.8.8.8", "10.0.0.5"))
    assert caught.value.permanent
    assert caught.value.reason == (
        "mixed.example resolves to 10.0.0.5, a private address (not in the allowed networks)"
    )


def test_localhost_is_refused_after_real_resolution() -> None:
    with pytest.raises(AddressRefused, match=r"localhost resolves to .* loopback"):
        resolve_and_vet("localhost", 80)


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "[::1]"])
def test_numeric_spellings_of_loopback_are_refused(host: str) -> None:
    _, name, port = check_url(f"http://{host}/hook")
    with pytest.raises(AddressRefused):
        resolve_and_vet(name, port)


def test_an_allowed_network_lets_its_addresses_through() -> None:
    allowed = parse_networks(["10.20.0.0/16"], "allow")
    found = resolve_and_vet(
        "chat.corp", 443, allowed, fake_resolver("10.20.3.4", "::ffff:10.20.9.9")
    )
    assert [str(a) for a in found] == ["10.20.3.4", "::ffff:a14:909"]
    with pytest.raises(AddressRefused):
        resolve_and_vet("chat.corp", 443, allowed, fake_resolver("10.21.0.1"))


def test_an_unknown_name_is_retryable() -> None:
    with pytest.raises(TransportError) as caught:
        resolve_and_vet("no-such-host.invalid", 443)
    assert not caught.value.permanent


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com/",
        "https://user:pw@example.com/hook",
        "https:///nohost",
        "https://example.com:99999/",
        "https://example.com/a b",
        "javascript:alert(1)",
    ],
)
def test_only_plain_http_and_https_urls(url: str) -> None:
    with pytest.raises(NotifyConfigError, match=r"^url: "):
        check_url(url)


@pytest.mark.parametrize("value", ["10.0.0.1/8", "not-a-net", "300.0.0.0/8"])
def test_bad_allow_list_entries_name_their_index(value: str) -> None:
    with pytest.raises(NotifyConfigError, match=r"^allow_networks\[1\]: "):
        parse_networks(["127.0.0.0/8", value], "allow_networks")


def test_the_vetted_address_is_dialled_and_the_name_kept_in_host(http_server: HttpServer) -> None:
    # The name resolves (once) to loopback, allowed here; the connection goes there and
    # the request still says which site it is for.
    url = http_server.url(host=HOOK_NAME, path="/hook?x=1")
    reply = post_json(url, b"{}", allowed=LOOPBACK, resolver=fake_resolver("127.0.0.1"))
    assert reply.status == 200
    request = http_server.requests[0]
    assert request.path == "/hook?x=1"
    assert request.headers["Host"] == f"{HOOK_NAME}:{http_server.port}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"


def test_https_checks_the_certificate_against_the_name_not_the_ip(
    https_server: HttpServer, certificate: Certificate
) -> None:
    trust = ssl.create_default_context(cafile=str(certificate.cert_file))
    url = https_server.url(host=HOOK_NAME, scheme="https")
    reply = post_json(
        url, b"{}", allowed=LOOPBACK, tls_context=trust, resolver=fake_resolver("127.0.0.1")
    )
    assert reply.status == 200
    # A name the certificate does not carry fails even though the IP is the same.
    other = https_server.url(host="other.example.test", scheme="https")
    with pytest.raises(TransportError) as caught:
        post_json(
            other, b"{}", allowed=LOOPBACK, tls_context=trust, resolver=fake_resolver("127.0.0.1")
        )
    assert caught.value.permanent
    assert "certificate" in caught.value.reason


def test_the_reply_is_read_up_to_the_cap(http_server: HttpServer) -> None:
    http_server.reply[0] = (200, {}, b"x" * 10_000)
    reply = post_json(http_server.url(), b"{}", allowed=LOOPBACK, max_response_bytes=100)
    assert reply.body == b"x" * 100 and reply.truncated
