"""Shared parts of the alert job tests: settings, an alert in the store, a clock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from sekimori.server.store.alerts import AlertMatch, record_alert_matches
from sekimori.server.store.schema import alert_comments, alerts
from sekimori.settings import NotifySettings, ServerSettings
from tests.console.seed import add_device
from tests.server.notify.conftest import HttpServer, Mailbox, SmtpServer, free_port, run_http

T0 = 1_800_000_000_000_000
SECOND = 1_000_000


@dataclass
class Clock:
    """Time the jobs see, moved by the test."""

    now: int = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * SECOND)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextlib.contextmanager
def smtp_on(port: int) -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd, in a thread) on ``port``, no login."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(port, mailbox)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with smtp_on(free_port()) as server:
        yield server


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    yield from run_http()


def email_target(port: int, **changes: Any) -> dict[str, Any]:
    target: dict[str, Any] = {
        "kind": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "alerts@sekimori.example",
        "recipients": ["soc@example.com"],
        "timeout_seconds": 5.0,
    }
    target.update(changes)
    return target


def server_settings(
    targets: dict[str, dict[str, Any]],
    routes: list[dict[str, Any]] | None = None,
    **notify: Any,
) -> ServerSettings:
    data: dict[str, Any] = {
        "targets": targets,
        "routes": [{"targets": list(targets)}] if routes is None else routes,
        "console_url": "https://sekimori.example",
    }
    data.update(notify)
    return ServerSettings(notify=msgspec.convert(data, NotifySettings))


def raise_alert(
    engine: sa.Engine,
    *,
    hostname: str = "pc-0042",
    rule_id: str = "builtin.file_copied_to_removable",
    severity: str = "high",
    now_us: int = T0,
) -> int:
    """A new alert (as ingest raises it) on a new device; returns its id."""
    device = add_device(engine, hostname, group="Finance", last_seen_us=now_us)
    with engine.begin() as conn:
        recorded = record_alert_matches(
            conn,
            [
                AlertMatch(
                    rule_id=rule_id,
                    title="File copied to removable media",
                    severity=severity,
                    device_id=device,
                    key="",
                    time_us=now_us,
                    summary="/home/tanaka/plan.xlsx -> /media/usb0/plan.xlsx",
                )
            ],
            now_us=now_us,
        )
    return recorded.created[0]


@dataclass(frozen=True)
class Outbox:
    notified_us: int | None
    notify_attempts: int
    notify_after_us: int


def outbox(engine: sa.Engine, alert_id: int) -> Outbox:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                alerts.c.notified_us, alerts.c.notify_attempts, alerts.c.notify_after_us
            ).where(alerts.c.id == alert_id)
        ).one()
    return Outbox(row.notified_us, int(row.notify_attempts), int(row.notify_after_us))


def history(engine: sa.Engine, alert_id: int) -> list[tuple[str, str]]:
    """(author, body) of the alert's history entries."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(alert_comments.c.author, alert_comments.c.body)
            .where(alert_comments.c.alert_id == alert_id)
            .order_by(alert_comments.c.id)
        )
        return [(str(r.author), str(r.body)) for r in rows]
