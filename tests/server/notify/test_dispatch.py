"""The dispatcher with in-memory transports (the real socket paths are tested in
test_email and test_webhook): routing, rate limiting and per-target results."""

from __future__ import annotations

from typing import ClassVar

import pytest

from sekimori.server.notify import (
    AlertMessage,
    Dispatcher,
    Failed,
    NotifyConfigError,
    RateLimit,
    RateLimiter,
    Route,
    Sent,
    Severity,
    Suppressed,
    Transport,
    TransportError,
)
from tests.server.notify.conftest import make_alert


class Recorder(Transport):
    kind: ClassVar[str] = "memory"

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[AlertMessage] = []
        self.error = error

    def notify(self, message: AlertMessage) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(message)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


ROUTES = [
    Route(rule="*", min_severity=Severity.HIGH, targets=("mail",)),
    Route(rule="usb-mass-storage", targets=("chat",)),
    Route(rule="mass-delete", min_severity=Severity.LOW, targets=("chat", "mail")),
]


def test_routes_pick_targets_by_rule_and_minimum_severity() -> None:
    mail, chat = Recorder(), Recorder()
    dispatcher = Dispatcher({"mail": mail, "chat": chat}, limiter=None)
    assert dispatcher.send(make_alert(), ROUTES) == {"mail": Sent("mail"), "chat": Sent("chat")}
    low_usb = make_alert(severity=Severity.LOW)
    assert dispatcher.send(low_usb, ROUTES) == {"chat": Sent("chat")}
    info_delete = make_alert(rule_id="mass-delete", severity=Severity.INFO)
    assert dispatcher.send(info_delete, ROUTES) == {}
    critical_delete = make_alert(rule_id="mass-delete", severity=Severity.CRITICAL)
    assert list(dispatcher.send(critical_delete, ROUTES)) == ["mail", "chat"]  # each once
    assert len(mail.sent) == 2 and len(chat.sent) == 3


def test_the_rate_limit_suppresses_and_the_next_message_says_how_many() -> None:
    clock = Clock()
    chat = Recorder()
    limiter = RateLimiter(RateLimit(per_hour=1, burst=1), clock=clock)
    dispatcher = Dispatcher({"chat": chat}, limiter)
    routes = [Route(targets=("chat",))]
    assert dispatcher.send(make_alert(), routes) == {"chat": Sent("chat")}
    results = [dispatcher.send(make_alert(), routes)["chat"] for _ in range(37)]
    assert results[-1] == Suppressed("chat", 37)
    clock.now += 3600
    assert dispatcher.send(make_alert(), routes) == {"chat": Sent("chat", 37)}
    assert chat.sent[-1].suppressed_before == 37
    assert "37 more notifications" in chat.sent[-1].plain_text()


def test_failures_come_back_per_target_and_do_not_stop_the_others() -> None:
    transports = {
        "down": Recorder(TransportError("cannot reach relay: timed out", permanent=False)),
        "gone": Recorder(TransportError("HTTP 404: no_service", permanent=True)),
        "buggy": Recorder(KeyError("oops")),
        "fine": Recorder(),
    }
    limiter = RateLimiter(RateLimit(per_hour=1, burst=1), clock=Clock())
    dispatcher = Dispatcher(transports, limiter)
    routes = [Route(targets=("down", "gone", "buggy", "fine", "missing"))]
    assert dispatcher.send(make_alert(), routes) == {
        "down": Failed("down", "cannot reach relay: timed out", permanent=False),
        "gone": Failed("gone", "HTTP 404: no_service", permanent=True),
        "buggy": Failed("buggy", "internal error: KeyError", permanent=False),
        "fine": Sent("fine"),
        "missing": Failed("missing", "no target named 'missing'", permanent=True),
    }
    # A failed send gave its token back: the retry is not rate limited.
    transports["down"].error = None
    assert dispatcher.send(make_alert(), [Route(targets=("down",))]) == {"down": Sent("down")}


def test_routes_naming_unknown_targets_are_refused_up_front() -> None:
    dispatcher = Dispatcher({"mail": Recorder()}, limiter=None)
    dispatcher.check_routes(ROUTES[:1])
    with pytest.raises(NotifyConfigError, match=r"^routes\[1\]\.targets: no target 'chat'"):
        dispatcher.check_routes(ROUTES)
