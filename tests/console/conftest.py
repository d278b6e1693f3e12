"""A running server with named console users (Healthchecks-style alice, bob, ...),
and an HTTP client that logs in like a browser does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sekimori.server.store.users import create_user
from tests.processes import ServerProcess

PASSWORD = "correct horse battery staple"

# name -> (role, groups; empty means every group)
USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "alice": ("administrator", ()),
    "bob": ("operator", ("sales",)),
    "carol": ("auditor", ()),
    "dave": ("viewer", ()),
    "erin": ("operator", ("hr",)),
}

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')


class ConsoleClient(httpx.Client):
    """httpx with the console's login and CSRF handling."""

    csrf: str = ""

    def login(self, username: str, password: str = PASSWORD, next_: str = "/") -> httpx.Response:
        form = self.get("/login")
        token = _LOGIN_CSRF.search(form.text)
        assert token, form.text
        response = self.post(
            "/login",
            data={
                "login_csrf": token.group(1),
                "username": username,
                "password": password,
                "next": next_,
            },
        )
        if response.status_code == 303 and response.headers["location"] != "/login":
            page = self.get("/account")
            found = _CSRF.search(page.text)
            self.csrf = found.group(1) if found else ""
        return response

    def submit(self, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        """POST a form with the session's CSRF token, as the console's forms do."""
        return self.post(url, data={"csrf_token": self.csrf, **(data or {})})


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module (SQLite) with the named users."""
    base: Path = tmp_path_factory.mktemp("console")
    proc = ServerProcess(base / "server", f"sqlite:///{base / 'store' / 'sekimori.db'}").start()
    try:
        for name, (role, groups) in USERS.items():
            create_user(
                proc.engine(),
                name,
                PASSWORD,
                role,  # type: ignore[arg-type]
                groups_=list(groups),
                all_groups=not groups,
            )
        yield proc
    finally:
        proc.dispose()


@pytest.fixture
def client(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with ConsoleClient(
        base_url=f"http://127.0.0.1:{console_server.console_port}", timeout=30
    ) as http:
        yield http


def as_user(server: ServerProcess, name: str) -> ConsoleClient:
    http = ConsoleClient(base_url=f"http://127.0.0.1:{server.console_port}", timeout=30)
    response = http.login(name)
    assert response.status_code == 303, response.text
    return http
