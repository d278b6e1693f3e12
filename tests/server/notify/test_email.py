"""Email against a real SMTP server (aiosmtpd in a thread): plain, STARTTLS with login,
implicit TLS, and the mapping of every failure to permanent or retryable."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from sekimori.server.notify import (
    EmailSettings,
    EmailTransport,
    NotifyConfigError,
    TransportError,
)
from tests.server.notify.conftest import (
    PASSWORD,
    USERNAME,
    Certificate,
    SmtpServer,
    free_port,
    make_alert,
)


def settings(port: int = 25, **changes: Any) -> EmailSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "alerts@sekimori.example",
        "recipients": ["admin@example.com", "soc@example.com"],
        "timeout_seconds": 5.0,
    }
    values.update(changes)
    return EmailSettings(**values)


def received(server: SmtpServer, index: int = 0) -> EmailMessage:
    raw = server.mailbox.envelopes[index].original_content
    assert isinstance(raw, bytes)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def subject(mail: EmailMessage) -> str:
    # The email package folds a long Subject right after the colon; its own parser
    # keeps that fold's leading space (mail clients drop it).
    return str(mail["Subject"]).strip()


def bodies(mail: EmailMessage) -> tuple[str, str]:
    plain, rich = mail.get_body(("plain",)), mail.get_body(("html",))
    assert isinstance(plain, EmailMessage) and isinstance(rich, EmailMessage)
    return plain.get_content(), rich.get_content()


def test_the_alert_arrives_with_its_headers_and_both_bodies(smtp_server: SmtpServer) -> None:
    EmailTransport(settings(smtp_server.port)).notify(make_alert())
    envelope = smtp_server.mailbox.envelopes[0]
    assert envelope.mail_from == "alerts@sekimori.example"
    assert envelope.rcpt_tos == ["admin@example.com", "soc@example.com"]
    mail = received(smtp_server)
    assert subject(mail) == (
        "[Sekimori] High: USB mass-storage device attached on pc-0042 (3 times)"
    )
    assert mail["From"] == "Sekimori <alerts@sekimori.example>"
    assert mail["To"] == "admin@example.com, soc@example.com"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["X-Sekimori-Alert"] == "42"
    assert mail["Message-ID"].endswith("@sekimori.example>")
    plain, rich = bodies(mail)
    assert "Device      pc-0042" in plain
    assert "First seen  2026-01-01T00:00:00Z" in plain
    assert "usb attach SanDisk Ultra 32 GB (user tanaka)" in plain
    assert "https://sekimori.example/alerts/42" in plain
    assert '<a href="https://sekimori.example/alerts/42">Open in the console</a>' in rich


def test_a_japanese_subject_is_encoded_and_decodes_back(smtp_server: SmtpServer) -> None:
    EmailTransport(settings(smtp_server.port)).notify(make_alert(locale="ja", count=1))
    raw = smtp_server.mailbox.envelopes[0].original_content
    assert isinstance(raw, bytes)
    assert b"=?utf-8?" in raw  # RFC 2047 encoded-word, not raw UTF-8 in the header
    mail = received(smtp_server)
    assert subject(mail) == "[Sekimori] 高: pc-0042 で USB mass-storage device attached"
    assert "端末" in bodies(mail)[0]


def test_line_breaks_in_event_data_cannot_add_headers(smtp_server: SmtpServer) -> None:
    hostile = make_alert(
        hostname="pc-1\r\nBcc: thief@evil.example",
        rule_title="Copy\nX-Injected: yes",
        summary=("<script>alert(1)</script>\r\nSubject: fake",),
    )
    EmailTransport(settings(smtp_server.port)).notify(hostile)
    envelope = smtp_server.mailbox.envelopes[0]
    assert envelope.rcpt_tos == ["admin@example.com", "soc@example.com"]
    mail = received(smtp_server)
    assert mail["Bcc"] is None and mail["X-Injected"] is None
    assert subject(mail) == (
        "[Sekimori] High: Copy X-Injected: yes on pc-1 Bcc: thief@evil.example (3 times)"
    )
    _, rich = bodies(mail)
    assert "<script>" not in rich and "&lt;script&gt;" in rich


def test_starttls_with_login_against_a_self_signed_relay(
    smtp_starttls: SmtpServer, certificate: Certificate, tmp_path: Path
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    transport = EmailTransport(
        settings(
            smtp_starttls.port,
            security="starttls",
            username=USERNAME,
            password_file=str(secret),
            ca_file=str(certificate.cert_file),
        )
    )
    transport.notify(make_alert())
    assert received(smtp_starttls)["X-Sekimori-Alert"] == "42"


def test_a_refused_login_is_permanent(smtp_starttls: SmtpServer, certificate: Certificate) -> None:
    transport = EmailTransport(
        settings(
            smtp_starttls.port,
            security="starttls",
            username=USERNAME,
            password="wrong",
            ca_file=str(certificate.cert_file),
        )
    )
    with pytest.raises(TransportError) as caught:
        transport.notify(make_alert())
    assert caught.value.permanent
    assert caught.value.reason.startswith("login refused: 535")
    assert "wrong" not in caught.value.reason
    assert smtp_starttls.mailbox.envelopes == []


def test_an_untrusted_certificate_is_permanent(smtp_starttls: SmtpServer) -> None:
    transport = EmailTransport(
        settings(smtp_starttls.port, security="starttls", username=USERNAME, password=PASSWORD)
    )
    with pytest.raises(TransportError) as caught:
        transport.notify(make_alert())
    assert caught.value.permanent
    assert "certificate" in caught.value.reason


def test_implicit_tls(smtp_tls: SmtpServer, certificate: Certificate) -> None:
    transport = EmailTransport(
        settings(smtp_tls.port, security="tls", ca_file=str(certificate.cert_file))
    )
    transport.notify(make_alert())
    assert len(smtp_tls.mailbox.envelopes) == 1


def test_a_recipient_refused_with_5xx_is_permanent(smtp_server: SmtpServer) -> None:
    transport = EmailTransport(settings(smtp_server.port, recipients=["nobody@example.com"]))
    with pytest.raises(TransportError) as caught:
        transport.notify(make_alert())
    assert caught.value.permanent
    assert "nobody@example.com (550" in caught.value.reason


def test_a_recipient_refused_with_4xx_is_retryable(smtp_server: SmtpServer) -> None:
    transport = EmailTransport(settings(smtp_server.port, recipients=["busy@example.com"]))
    with pytest.raises(TransportError) as caught:
        transport.notify(make_alert())
    assert not caught.value.permanent


def test_some_recipients_refused_is_reported_without_a_retry(smtp_server: SmtpServer) -> None:
    transport = EmailTransport(
        settings(smtp_server.port, recipients=["admin@example.com", "nobody@example.com"])
    )
    with pytest.raises(TransportError) as caught:
        transport.notify(make_alert())
    # The mail reached admin@: a retry would send it twice.
    assert caught.value.permanent
    assert caught.value.reason.startswith("delivered, but some recipients were refused")
    assert smtp_server.mailbox.envelopes[0].rcpt_tos == ["admin@example.com"]


def test_no_server_listening_is_retryable() -> None:
    transport = EmailTransport(settings(free_port()))
    with pytest.raises(TransportError) as caught:
        transport.notify(make_alert())
    assert not caught.value.permanent
    assert caught.value.reason.startswith("cannot reach 127.0.0.1:")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sender": "alerts@exa mple.com"}, "sender"),
        ({"sender": "alerts@example.com\r\nBcc: x@y.z"}, "sender"),
        ({"recipients": []}, "recipients"),
        ({"recipients": ["ok@example.com", "not-an-address"]}, "recipients[1]"),
        ({"recipients": ["a@b.c>, evil@x.y"]}, "recipients[0]"),
        ({"username": "u", "password": "p"}, "security"),
        ({"security": "starttls", "password": "p"}, "username"),
        (
            {"security": "starttls", "username": "u", "password": "p", "password_file": "f"},
            "password, password_file",
        ),
        ({"port": 70000}, "port"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"host": "relay\nexample"}, "host"),
        (
            {"security": "starttls", "username": "u", "password_file": "/nonexistent/pw"},
            "password_file",
        ),
    ],
)
def test_bad_settings_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(NotifyConfigError) as caught:
        EmailTransport(settings(**({"port": 25} | changes)))
    assert str(caught.value).startswith(f"{field}:")
