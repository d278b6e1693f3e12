"""The notification worker against a real SMTP server (aiosmtpd) and a real HTTP server:
one mail per alert even with two workers, retries with backoff, giving up, partial
deliveries not repeated, the rate limit kept across a restart (SQLite and PostgreSQL)."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.alerting.notifier import Notifier, console_base_url
from sekimori.server.store.alert_outbox import NOTIFY_AUTHOR, claim_alert, due_alerts
from sekimori.settings import NotifySettings, ServerSettings
from tests.server.alerting.conftest import (
    SECOND,
    Clock,
    email_target,
    history,
    outbox,
    raise_alert,
    server_settings,
    smtp_on,
)
from tests.server.notify.conftest import HttpServer, SmtpServer, free_port


def _mail(server: SmtpServer, index: int = 0) -> EmailMessage:
    raw = server.mailbox.envelopes[index].original_content
    assert isinstance(raw, bytes)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_a_new_alert_arrives_by_email_once(
    engine: sa.Engine, smtp_server: SmtpServer, clock: Clock
) -> None:
    alert_id = raise_alert(engine, now_us=clock.now)
    notifier = Notifier(
        engine, server_settings({"mail": email_target(smtp_server.port)}), clock=clock
    )
    assert notifier.run_once() == 1
    assert len(smtp_server.mailbox.envelopes) == 1
    mail = _mail(smtp_server)
    assert "File copied to removable media on pc-0042" in str(mail["Subject"])
    assert mail["X-Sekimori-Alert"] == str(alert_id)
    plain = mail.get_body(("plain",))
    assert isinstance(plain, EmailMessage)
    text = plain.get_content()
    assert "Finance" in text
    assert "/media/usb0/plan.xlsx" in text
    assert f"https://sekimori.example/alerts/{alert_id}" in text
    state = outbox(engine, alert_id)
    assert state.notified_us == clock.now
    assert state.notify_attempts == 1
    # Nothing is due any more: no second mail, later either.
    clock.advance(3600)
    assert notifier.run_once() == 0
    assert len(smtp_server.mailbox.envelopes) == 1


@pytest.mark.parametrize("shared_owner", [False, True], ids=["two-replicas", "lease-overlap"])
def test_two_workers_send_each_alert_once(
    engine: sa.Engine, smtp_server: SmtpServer, shared_owner: bool
) -> None:
    # Two replicas polling the same store at the same time, on the real clock. With a
    # shared owner both hold the lease at once (as when a slow pass outlives it): the
    # per-alert claim alone keeps each alert to one mail.
    ids = [raise_alert(engine, hostname=f"pc-{i}", now_us=now_us()) for i in range(6)]
    settings = server_settings(
        {"mail": email_target(smtp_server.port)}, rate_limit={"per_hour": 100, "burst": 100}
    )
    owner = "same-owner" if shared_owner else None
    workers = [Notifier(engine, settings, owner=owner) for _ in range(2)]
    barrier = threading.Barrier(2)
    handled: list[int] = []

    def work(notifier: Notifier) -> None:
        barrier.wait()
        for _ in range(3):
            handled.append(notifier.run_once())

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(handled) == 6
    sent = sorted(str(_mail(smtp_server, i)["X-Sekimori-Alert"]) for i in range(6))
    assert len(smtp_server.mailbox.envelopes) == 6
    assert sent == sorted(str(i) for i in ids)
    assert all(outbox(engine, i).notified_us is not None for i in ids)


def test_a_claim_is_won_by_one_worker_only(engine: sa.Engine, clock: Clock) -> None:
    # Even two workers that both read the alert as due (both thought they held the
    # lease): the compare-and-set lets one through.
    alert_id = raise_alert(engine, now_us=clock.now)
    first = due_alerts(engine, now_us=clock.now, limit=10)
    second = due_alerts(engine, now_us=clock.now, limit=10)
    assert [a.id for a in first] == [a.id for a in second] == [alert_id]
    assert claim_alert(engine, first[0], until_us=clock.now + 300 * SECOND)
    assert not claim_alert(engine, second[0], until_us=clock.now + 300 * SECOND)
    # Claimed: not due until the claim runs out (a worker that died mid-send).
    assert due_alerts(engine, now_us=clock.now + 299 * SECOND, limit=10) == []
    assert [a.id for a in due_alerts(engine, now_us=clock.now + 300 * SECOND, limit=10)] == [
        alert_id
    ]


def test_a_webhook_to_a_local_server_allowed_explicitly(
    engine: sa.Engine, http_server: HttpServer, clock: Clock
) -> None:
    alert_id = raise_alert(engine, now_us=clock.now)
    hook = {
        "kind": "webhook",
        "url": http_server.url(),
        "format": "slack",
        "allow_networks": ["127.0.0.1/32"],
    }
    Notifier(engine, server_settings({"chat": hook}), clock=clock).run_once()
    assert len(http_server.requests) == 1
    body = json.loads(http_server.requests[0].body)
    assert "pc-0042" in body["text"]
    assert outbox(engine, alert_id).notified_us == clock.now
    assert history(engine, alert_id) == []


def test_a_webhook_to_a_private_address_is_refused_and_noted(
    engine: sa.Engine, http_server: HttpServer, clock: Clock
) -> None:
    alert_id = raise_alert(engine, now_us=clock.now)
    hook = {"kind": "webhook", "url": http_server.url(), "format": "json"}
    Notifier(engine, server_settings({"chat": hook}), clock=clock).run_once()
    assert http_server.requests == []
    # Refused for good (no retry can help): done, and the alert's history says why.
    assert outbox(engine, alert_id).notified_us == clock.now
    [(author, body)] = history(engine, alert_id)
    assert author == NOTIFY_AUTHOR
    assert body.startswith("Notification to chat failed:")
    assert "127.0.0.1" in body


def test_smtp_down_then_up_is_retried_with_backoff(engine: sa.Engine, clock: Clock) -> None:
    port = free_port()  # nothing listens there yet
    alert_id = raise_alert(engine, now_us=clock.now)
    settings = server_settings(
        {"mail": email_target(port)}, retry_initial_seconds=60, retry_max_seconds=600
    )
    notifier = Notifier(engine, settings, clock=clock)
    start = clock.now
    notifier.run_once()
    state = outbox(engine, alert_id)
    assert (state.notified_us, state.notify_attempts) == (None, 1)
    assert state.notify_after_us == start + 60 * SECOND
    clock.advance(60)
    notifier.run_once()
    state = outbox(engine, alert_id)
    assert state.notify_attempts == 2
    assert state.notify_after_us == clock.now + 120 * SECOND  # doubled
    clock.advance(119)
    assert notifier.run_once() == 0  # not due yet
    with smtp_on(port) as smtp:
        clock.advance(1)
        assert notifier.run_once() == 1
        assert len(smtp.mailbox.envelopes) == 1
    state = outbox(engine, alert_id)
    assert (state.notified_us, state.notify_attempts) == (clock.now, 3)
    assert history(engine, alert_id) == []


def test_after_max_attempts_the_worker_gives_up_and_says_so(
    engine: sa.Engine, clock: Clock
) -> None:
    alert_id = raise_alert(engine, now_us=clock.now)
    settings = server_settings({"mail": email_target(free_port())}, max_attempts=2)
    notifier = Notifier(engine, settings, clock=clock)
    notifier.run_once()
    clock.advance(60)
    notifier.run_once()
    state = outbox(engine, alert_id)
    assert (state.notified_us, state.notify_attempts) == (clock.now, 2)
    [(author, body)] = history(engine, alert_id)
    assert author == NOTIFY_AUTHOR
    assert body.startswith("Notification to mail failed after 2 attempts:")
    clock.advance(3600)
    assert notifier.run_once() == 0


def test_a_target_that_got_the_alert_does_not_get_it_again_on_retry(
    engine: sa.Engine, smtp_server: SmtpServer, http_server: HttpServer, clock: Clock
) -> None:
    alert_id = raise_alert(engine, now_us=clock.now)
    hook = {"kind": "webhook", "url": http_server.url(), "allow_networks": ["127.0.0.0/8"]}
    settings = server_settings({"mail": email_target(smtp_server.port), "chat": hook})
    http_server.reply[0] = (503, {}, b"busy")
    notifier = Notifier(engine, settings, clock=clock)
    notifier.run_once()
    assert len(smtp_server.mailbox.envelopes) == 1
    assert len(http_server.requests) == 1
    assert outbox(engine, alert_id).notified_us is None
    http_server.reply[0] = (200, {}, b"ok")
    clock.advance(60)
    # Another replica (a restart) takes over: what was delivered comes from the store.
    Notifier(engine, settings, clock=clock).run_once()  # the first still holds the lease
    assert len(http_server.requests) == 1
    clock.advance(600)  # the lease of the first has run out
    Notifier(engine, settings, clock=clock).run_once()
    assert len(http_server.requests) == 2
    assert len(smtp_server.mailbox.envelopes) == 1
    assert outbox(engine, alert_id).notified_us == clock.now


def test_an_alert_no_route_matches_is_marked_without_sending(
    engine: sa.Engine, smtp_server: SmtpServer, clock: Clock
) -> None:
    low = raise_alert(engine, hostname="pc-1", severity="low", now_us=clock.now)
    other = raise_alert(engine, hostname="pc-2", rule_id="custom.ssh", now_us=clock.now)
    wanted = raise_alert(engine, hostname="pc-3", now_us=clock.now)
    routes = [{"targets": ["mail"], "rules": ["builtin.*"], "min_severity": "medium"}]
    settings = server_settings({"mail": email_target(smtp_server.port)}, routes=routes)
    assert Notifier(engine, settings, clock=clock).run_once() == 3
    assert [e.rcpt_tos for e in smtp_server.mailbox.envelopes] == [["soc@example.com"]]
    assert _mail(smtp_server)["X-Sekimori-Alert"] == str(wanted)
    for alert_id, attempts in ((low, 0), (other, 0), (wanted, 1)):
        state = outbox(engine, alert_id)
        assert (state.notified_us, state.notify_attempts) == (clock.now, attempts)


def test_without_any_target_alerts_are_marked_and_nothing_piles_up(
    engine: sa.Engine, clock: Clock
) -> None:
    ids = [raise_alert(engine, hostname=f"pc-{i}", now_us=clock.now) for i in range(3)]
    notifier = Notifier(engine, server_settings({}, routes=[]), clock=clock)
    assert notifier.run_once() == 3
    assert all(outbox(engine, i).notified_us == clock.now for i in ids)


def test_the_rate_limit_holds_across_a_restart(
    engine: sa.Engine, smtp_server: SmtpServer, clock: Clock
) -> None:
    settings = server_settings(
        {"mail": email_target(smtp_server.port)}, rate_limit={"per_hour": 1, "burst": 1}
    )
    raise_alert(engine, hostname="pc-1", now_us=clock.now)
    Notifier(engine, settings, clock=clock, owner="a").run_once()
    assert len(smtp_server.mailbox.envelopes) == 1
    # A restarted server (new owner once the old lease ran out) loads the buckets.
    clock.advance(400)
    raise_alert(engine, hostname="pc-2", now_us=clock.now)
    Notifier(engine, settings, clock=clock, owner="b").run_once()
    assert len(smtp_server.mailbox.envelopes) == 1  # held back
    clock.advance(3600)
    third = raise_alert(engine, hostname="pc-3", now_us=clock.now)
    Notifier(engine, settings, clock=clock, owner="b").run_once()
    assert len(smtp_server.mailbox.envelopes) == 2
    mail = _mail(smtp_server, 1)
    assert mail["X-Sekimori-Alert"] == str(third)
    plain = mail.get_body(("plain",))
    assert isinstance(plain, EmailMessage)
    assert "1 more notifications for this rule were held back" in plain.get_content()


def test_the_console_link_base() -> None:
    assert console_base_url(ServerSettings()) == "http://127.0.0.1:8080"
    everywhere = ServerSettings(console_host="0.0.0.0", console_port=8443)  # noqa: S104
    assert console_base_url(everywhere) == f"https://{socket.getfqdn()}:8443"
    assert console_base_url(ServerSettings(console_host="::1")) == "http://[::1]:8080"
    given = ServerSettings(notify=NotifySettings(console_url="https://sekimori.example/"))
    assert console_base_url(given) == "https://sekimori.example"
