"""Outbound HTTP that cannot be pointed at the server's own network (SSRF guard).

A webhook URL is typed in by an administrator, but a console account can be stolen, and
an attacker who controls a DNS name can make it resolve to 127.0.0.1, to the cloud
metadata service (169.254.169.254) or to a database on the internal network. So:

1. Only ``http`` and ``https`` URLs, without credentials in them.
2. The host name is resolved with ``getaddrinfo`` and the request is refused if ANY
   resolved address is internal (:func:`refusal_reason`): private, loopback, link-local,
   multicast, reserved, unspecified, shared (100.64/10), site-local, Teredo, or an
   IPv4-mapped / 6to4 / NAT64 / IPv4-compatible IPv6 form wrapping such an IPv4 address —
   unless that address lies in a network the administrator allowed explicitly.
3. The connection is made to the vetted address itself, not to the name: a second DNS
   answer (rebinding between check and connect) is never asked for. The request still
   carries the original ``Host`` header, and for https the TLS handshake sends the
   original name as SNI and verifies the certificate against it.

This uses the standard library's ``http.client`` with a ``connect()`` that dials the
pinned address: it is maintained with Python, follows no redirects, reads no proxy
settings from the environment (a proxy would resolve the name itself and undo the pin),
and keeps the runtime free of another HTTP dependency (httpx is a dev-only dependency
here, and pinning an IP under it means reaching into its transport internals).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sekimori.server.notify.errors import AddressRefused, NotifyConfigError, TransportError

__all__ = [
    "HttpReply",
    "IPAddress",
    "IPNetwork",
    "check_url",
    "parse_networks",
    "post_json",
    "refusal_reason",
    "resolve_and_vet",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

USER_AGENT = "Sekimori-notify/1"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215 local-use prefix
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 transition form carries, with the form's name."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return "IPv4-compatible", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is internal (a short phrase), or None when it is public.

    IPv6 forms that wrap an IPv4 address are judged by the address they wrap.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, inner = embedded
            reason = refusal_reason(inner)
            return f"{form} form of a {reason} address" if reason else None
        if address in _NAT64_LOCAL:
            return "local-use NAT64"
        if address.teredo is not None:
            return "Teredo"
        if address.is_site_local:
            return "site-local"
    # Order matters only for the message: the most specific name first.
    checks = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in _SHARED, "shared (CGNAT)"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        # Anything else not globally routable (documentation ranges, benchmarking, …).
        (not address.is_global, "non-global"),
    )
    for hit, name in checks:
        if hit:
            return name
    return None


def parse_networks(values: Iterable[str], field: str) -> tuple[IPNetwork, ...]:
    """The administrator's allow-list (CIDR strings; a bare address is a /32 or /128)."""
    networks = []
    for index, value in enumerate(values):
        try:
            networks.append(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            raise NotifyConfigError(f"{field}[{index}]: {value!r} is not a network: {exc}") from exc
    return tuple(networks)


def _allowed(address: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)):
        candidates.append(embedded[1])
    return any(c in net for c in candidates for net in allowed if c.version == net.version)


def check_url(url: str, field: str = "url") -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; NotifyConfigError when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise NotifyConfigError(f"{field}: {url!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise NotifyConfigError(f"{field}: only http and https URLs, got {parts.scheme!r}")
    if not parts.hostname:
        raise NotifyConfigError(f"{field}: {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise NotifyConfigError(f"{field}: credentials in the URL are not accepted")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise NotifyConfigError(f"{field}: spaces or control characters in the URL")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve_and_vet(
    host: str,
    port: int,
    allowed: Sequence[IPNetwork] = (),
    resolver: Resolver = socket.getaddrinfo,
) -> list[IPAddress]:
    """Every address ``host`` resolves to, once, in the resolver's order.

    Raises AddressRefused if any of them is internal and not allowed (one bad answer is
    enough: which one a connection would use is not ours to choose), TransportError
    (retryable) if the name does not resolve.
    """
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransportError(f"cannot resolve {host}: {exc}", permanent=False) from exc
    addresses: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # a scoped IPv6 address: drop the zone
        try:
            address = ipaddress.ip_address(raw)
        except ValueError as exc:
            raise AddressRefused(f"{host} resolved to {raw!r}, not an IP address") from exc
        if address in addresses:
            continue
        reason = refusal_reason(address)
        if reason and not _allowed(address, allowed):
            raise AddressRefused(
                f"{host} resolves to {address}, a {reason} address (not in the allowed networks)"
            )
        addresses.append(address)
    if not addresses:
        raise TransportError(f"cannot resolve {host}: no address", permanent=False)
    return addresses


def _dial(address: IPAddress, port: int, timeout: float | None) -> socket.socket:
    sock = socket.create_connection((str(address), port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Dials ``address`` while keeping ``host`` for the Host header."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned_address = address

    def connect(self) -> None:
        self.sock = _dial(self.pinned_address, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, with TLS: SNI and certificate checked against ``host``, not the IP."""

    def __init__(
        self, host: str, port: int, address: IPAddress, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.pinned_address = address
        self.tls_context = context

    def connect(self) -> None:
        sock = _dial(self.pinned_address, self.port, self.timeout)
        try:
            self.sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes  # at most max_response_bytes
    truncated: bool


def post_json(
    url: str,
    body: bytes,
    *,
    allowed: Sequence[IPNetwork] = (),
    timeout: float = 5.0,
    max_response_bytes: int = 64 * 1024,
    tls_context: ssl.SSLContext | None = None,
    resolver: Resolver = socket.getaddrinfo,
) -> HttpReply:
    """POST ``body`` (JSON) to ``url`` through the SSRF guard; redirects are not followed.

    ``timeout`` bounds the whole exchange (connect, send, reading the reply); only the
    first ``max_response_bytes`` of the reply are read. Raises NotifyConfigError for a
    URL that is not http(s), AddressRefused for a forbidden address, TransportError
    (retryable) when the network fails.
    """
    scheme, host, port = check_url(url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + timeout
    addresses = resolve_and_vet(host, port, allowed, resolver)
    context = tls_context or ssl.create_default_context()
    last_error: OSError | None = None
    for address in addresses:
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = _PinnedHTTPSConnection(host, port, address, timeout, context)
        else:
            conn = _PinnedHTTPConnection(host, port, address, timeout)
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise TransportError(
                f"TLS certificate of {host} refused: {exc.verify_message}", permanent=True
            ) from exc
        except OSError as exc:
            conn.close()
            last_error = exc
            continue
        try:
            return _exchange(conn, target, body, deadline, max_response_bytes)
        finally:
            conn.close()
    raise TransportError(f"cannot connect to {host}:{port}: {last_error}", permanent=False)


def _exchange(
    conn: http.client.HTTPConnection, target: str, body: bytes, deadline: float, cap: int
) -> HttpReply:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
    }
    try:
        conn.request("POST", target, body=body, headers=headers)
        _shrink_timeout(conn, deadline)
        response = conn.getresponse()
        data = b""
        while len(data) <= cap:
            _shrink_timeout(conn, deadline)
            chunk = response.read1(min(16384, cap + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    except (OSError, http.client.HTTPException) as exc:
        raise TransportError(f"HTTP exchange failed: {exc!r}", permanent=False) from exc
    return HttpReply(status=response.status, body=data[:cap], truncated=len(data) > cap)


def _shrink_timeout(conn: http.client.HTTPConnection, deadline: float) -> None:
    # Socket timeouts apply per operation; a server dripping one byte at a time would
    # otherwise hold a worker for ever. Each step gets only what is left of the budget.
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the whole exchange took longer than the timeout")
    if conn.sock is not None:
        conn.sock.settimeout(remaining)
