"""A console client for the benchmark: logs in as a browser does (login form with its
double-submit CSRF cookie, then the session cookie) and times page requests over one
keep-alive HTTP connection, reading the server's own time from ``Server-Timing``."""

from __future__ import annotations

import http.client
import re
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from sekimori.bench._server import BenchmarkFailed

__all__ = ["ConsoleSession", "Timed"]

_LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')
_SERVER_TIMING = re.compile(r"(?:^|,)\s*app;dur=([0-9.]+)")


@dataclass(frozen=True, slots=True)
class Timed:
    status: int
    # The server's time (Server-Timing app;dur), None when the header is missing.
    server_ms: float | None
    # The whole round trip as this client saw it.
    client_ms: float
    body_bytes: int


class ConsoleSession:
    """One console user's HTTP session on a loopback console port."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self._cookies: dict[str, str] = {}

    def close(self) -> None:
        self._conn.close()

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[http.client.HTTPResponse, bytes, float]:
        headers = {"Accept": "text/html", "Accept-Language": "ja"}
        if self._cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        # uvicorn closes a keep-alive connection idle for 5 s: a session that waited
        # its turn finds it closed on its next request, and reconnects once.
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()  # reconnects on the next request
                idle_closed = isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                )
                if attempt == 2 or not idle_closed:
                    raise BenchmarkFailed(f"{method} {path}: {exc}") from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self._cookies.pop(name, None)
                else:
                    self._cookies[name] = morsel.value
        return response, data, elapsed_ms

    def login(self, username: str, password: str) -> None:
        """The login form, then its POST; fails unless the console lets us in."""
        response, page, _ = self.request("GET", "/login")
        found = _LOGIN_CSRF.search(page.decode("utf-8", "replace"))
        if response.status != 200 or not found:
            raise BenchmarkFailed(f"GET /login: status {response.status}, no login form")
        form = urlencode(
            {"login_csrf": found.group(1), "username": username, "password": password, "next": "/"}
        ).encode()
        response, _, _ = self.request("POST", "/login", form)
        location = response.headers.get("Location", "")
        if response.status != 303 or location.startswith("/login"):
            raise BenchmarkFailed(
                f"logging in as {username!r}: status {response.status}, location {location!r}"
            )

    def time(self, path: str) -> Timed:
        response, data, elapsed_ms = self.request("GET", path)
        found = _SERVER_TIMING.search(response.headers.get("Server-Timing", ""))
        return Timed(
            status=response.status,
            server_ms=float(found.group(1)) if found else None,
            client_ms=elapsed_ms,
            body_bytes=len(data),
        )
