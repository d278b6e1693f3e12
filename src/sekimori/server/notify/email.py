"""Email over SMTP: one message (plain text and simple HTML) to a fixed list of recipients.

Settings are typed (:class:`EmailSettings`); the password may instead come from a file
(``password_file``, for secrets mounted by an orchestrator). Every header value is built
from validated addresses or passed through :func:`one_line`, so a hostname or rule title
carrying CR/LF cannot add a header (the email package's policy would refuse it too, as a
second line of defence).

SMTP failures map to TransportError: a refused login or a 5xx reply (refused sender or
recipient, rejected data) is permanent; connection errors, timeouts and 4xx replies are
retryable (the server said "try again later").
"""

from __future__ import annotations

import html
import re
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import ClassVar, Literal

import msgspec

from sekimori.server.notify.errors import NotifyConfigError, TransportError
from sekimori.server.notify.message import AlertMessage, one_line
from sekimori.server.notify.transport import Transport

__all__ = ["EmailSettings", "EmailTransport", "build_email", "check_address"]

DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
MAX_RECIPIENTS = 100

# An ASCII addr-spec: dot-atom local part @ host name (letters, digits, hyphens).
# Quoted local parts, IP literals and SMTPUTF8 are not accepted; give an IDN domain in
# its punycode (xn--) form.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")


def check_address(value: str, field: str) -> str:
    """Return ``value`` if it is a plain ASCII mail address, else raise NotifyConfigError."""
    if len(value) > 254 or not _ADDRESS.fullmatch(value) or len(value.partition("@")[0]) > 64:
        raise NotifyConfigError(f"{field}: {value!r} is not a mail address (name@example.com)")
    return value


class EmailSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where and how to send mail. ``port`` 0 means the usual port for ``security``
    (25, 587 for STARTTLS, 465 for TLS). ``ca_file`` trusts that CA bundle instead of the
    system's (an internal relay with its own CA). A ``username`` needs TLS or STARTTLS:
    a password is never sent in the clear."""

    host: str
    sender: str
    recipients: list[str]
    port: int = 0
    security: Literal["none", "starttls", "tls"] = "starttls"
    sender_name: str = "Sekimori"
    username: str = ""
    password: str = ""
    password_file: str = ""
    timeout_seconds: float = 10.0
    ca_file: str = ""

    def check(self) -> None:
        """Raise NotifyConfigError naming the first invalid field."""
        if not self.host or one_line(self.host) != self.host or " " in self.host:
            raise NotifyConfigError(f"host: {self.host!r} is not a host name")
        if not 0 <= self.port <= 65535:
            raise NotifyConfigError(f"port: {self.port} is out of range")
        check_address(self.sender, "sender")
        if not self.recipients:
            raise NotifyConfigError("recipients: at least one address is needed")
        if len(self.recipients) > MAX_RECIPIENTS:
            raise NotifyConfigError(f"recipients: at most {MAX_RECIPIENTS} addresses")
        for index, address in enumerate(self.recipients):
            check_address(address, f"recipients[{index}]")
        if not 0 < self.timeout_seconds <= 120:
            raise NotifyConfigError("timeout_seconds: must be in (0, 120]")
        if self.password and self.password_file:
            raise NotifyConfigError("password, password_file: give one, not both")
        if (self.password or self.password_file) and not self.username:
            raise NotifyConfigError("username: a password is set without a username")
        if self.username and self.security == "none":
            raise NotifyConfigError("security: a login needs 'starttls' or 'tls'")

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]


def build_email(message: AlertMessage, settings: EmailSettings) -> EmailMessage:
    """The mail for ``message``: plain text with an HTML alternative."""
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = Address(
        display_name=one_line(settings.sender_name, 80), addr_spec=settings.sender
    )
    mail["To"] = [Address(addr_spec=address) for address in settings.recipients]
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid(domain=settings.sender.rsplit("@", 1)[1])
    # RFC 3834: tells auto-responders (out-of-office) not to answer.
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Sekimori-Alert"] = str(message.alert_id)
    mail.set_content(message.plain_text())
    mail.add_alternative(_html_body(message), subtype="html")
    return mail


def _html_body(message: AlertMessage) -> str:
    esc = html.escape
    rows = "".join(
        f'<tr><th align="left">{esc(label)}</th><td>{esc(value)}</td></tr>'
        for label, value in message.facts()
    )
    parts = [f"<h2>{esc(message.subject)}</h2>", f"<table>{rows}</table>"]
    if lines := message.event_lines():
        items = "".join(f"<li>{esc(line)}</li>" for line in lines)
        parts.append(f"<h3>{esc(message.text('events'))}</h3><ul>{items}</ul>")
    if note := message.suppressed_note():
        parts.append(f"<p>{esc(note)}</p>")
    url = esc(message.console_url, quote=True)
    parts.append(f'<p><a href="{url}">{esc(message.text("open"))}</a></p>')
    return "<!DOCTYPE html><html><body>" + "".join(parts) + "</body></html>\n"


class EmailTransport(Transport):
    """Sends each alert as one mail through the configured SMTP server."""

    kind: ClassVar[str] = "email"

    def __init__(self, settings: EmailSettings) -> None:
        settings.check()
        self.settings = settings
        self._password = settings.password
        if settings.password_file:
            try:
                self._password = Path(settings.password_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise NotifyConfigError(
                    f"password_file: cannot read {settings.password_file}: {exc}"
                ) from exc
        try:
            self._tls = ssl.create_default_context(cafile=settings.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise NotifyConfigError(f"ca_file: cannot load {settings.ca_file}: {exc}") from exc

    def notify(self, message: AlertMessage) -> None:
        mail = build_email(message, self.settings)
        try:
            refused = self._send(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(f"login refused: {_reply(exc)}", permanent=True) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused(exc.recipients, everyone=True) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise TransportError(f"server lacks a feature: {exc}", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            raise TransportError(
                f"server replied {_reply(exc)}", permanent=exc.smtp_code >= 500
            ) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise TransportError(f"server disconnected: {exc}", permanent=False) from exc
        except smtplib.SMTPException as exc:
            raise TransportError(f"SMTP error: {exc}", permanent=False) from exc
        except ssl.SSLCertVerificationError as exc:
            # The relay's certificate does not match or is untrusted: configuration.
            raise TransportError(
                f"TLS certificate refused: {exc.verify_message}", permanent=True
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot reach {self._where}: {exc}", permanent=False) from exc
        if refused:
            # The mail went to the other recipients; retrying would send it twice.
            raise _refused(refused, everyone=False)

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.effective_port}"

    def _send(self, mail: EmailMessage) -> dict[str, tuple[int, bytes]]:
        settings = self.settings
        smtp: smtplib.SMTP
        if settings.security == "tls":
            smtp = smtplib.SMTP_SSL(
                settings.host,
                settings.effective_port,
                timeout=settings.timeout_seconds,
                context=self._tls,
            )
        else:
            smtp = smtplib.SMTP(
                settings.host, settings.effective_port, timeout=settings.timeout_seconds
            )
        with smtp:
            if settings.security == "starttls":
                smtp.starttls(context=self._tls)
            if settings.username:
                smtp.login(settings.username, self._password)
            return smtp.send_message(mail)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = (
        exc.smtp_error.decode("utf-8", "replace")
        if isinstance(exc.smtp_error, bytes)
        else str(exc.smtp_error)
    )
    return one_line(f"{exc.smtp_code} {text}", 200)


def _refused(recipients: dict[str, tuple[int, bytes]], *, everyone: bool) -> TransportError:
    details = ", ".join(
        one_line(f"{address} ({code} {reply.decode('utf-8', 'replace')})", 120)
        for address, (code, reply) in sorted(recipients.items())
    )
    if everyone:
        # 4xx for every recipient means "later"; any 5xx will not change on a retry.
        permanent = any(code >= 500 for code, _ in recipients.values())
        return TransportError(f"recipients refused: {details}", permanent=permanent)
    return TransportError(f"delivered, but some recipients were refused: {details}", permanent=True)
