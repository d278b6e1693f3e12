"""Webhooks: Slack-compatible, Microsoft Teams-compatible and generic JSON payloads.

Every POST goes through :mod:`safe_http`: http(s) only, internal addresses refused after
DNS resolution unless allowed (``allow_networks``), the vetted address pinned for the
connection, a short timeout, no redirect followed, and at most ``max_response_bytes`` of
the reply read.

Text from managed PCs (hostnames, titles, event lines) is escaped for each format, so it
cannot mention ``@channel`` on Slack or forge a link in a Teams card.
"""

from __future__ import annotations

import re
import ssl
from typing import Any, ClassVar, Literal

import msgspec

from sekimori.clock import format_us
from sekimori.server.notify.errors import NotifyConfigError, TransportError
from sekimori.server.notify.message import AlertMessage
from sekimori.server.notify.safe_http import check_url, parse_networks, post_json
from sekimori.server.notify.transport import Transport

__all__ = [
    "WebhookSettings",
    "WebhookTransport",
    "generic_payload",
    "slack_payload",
    "teams_payload",
]


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A webhook target. ``allow_networks`` lists CIDRs that may be reached although they
    are internal (e.g. ``["10.20.0.0/16"]`` for an on-premises chat server); empty means
    public addresses only. ``ca_file`` trusts that CA bundle instead of the system's."""

    url: str
    format: Literal["slack", "teams", "json"] = "json"
    allow_networks: list[str] = msgspec.field(default_factory=list)
    timeout_seconds: float = 5.0
    max_response_bytes: int = 64 * 1024
    ca_file: str = ""

    def check(self) -> None:
        check_url(self.url)
        parse_networks(self.allow_networks, "allow_networks")
        if not 0 < self.timeout_seconds <= 30:
            raise NotifyConfigError("timeout_seconds: must be in (0, 30]")
        if not 0 < self.max_response_bytes <= 1024 * 1024:
            raise NotifyConfigError("max_response_bytes: must be in (0, 1 MiB]")


# -- payloads -----------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reads <…> as links and mentions (<!channel>); these three escapes
    # are the ones Slack documents.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: AlertMessage) -> dict[str, Any]:
    """``{"text": fallback, "blocks": [...]}`` (Slack incoming webhooks, Mattermost)."""
    fields = [
        {"type": "mrkdwn", "text": f"*{_slack_escape(label)}*\n{_slack_escape(value)}"}
        for label, value in message.facts()
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
        # Slack allows at most 10 fields per section.
        {"type": "section", "fields": fields[:10]},
    ]
    if lines := message.event_lines():
        text = "\n".join(f"• {_slack_escape(line)}" for line in lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
    if note := message.suppressed_note():
        blocks.append({"type": "context", "elements": [{"type": "plain_text", "text": note}]})
    link = f"<{message.console_url}|{_slack_escape(message.text('open'))}>"
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": link}})
    return {"text": _slack_escape(message.subject), "blocks": blocks}


_TEAMS_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!<>~|])")


def _teams_escape(text: str) -> str:
    # Adaptive Card text is a Markdown subset: escape its punctuation so event text
    # stays text (no forged [links](…), no emphasis).
    return _TEAMS_MARKDOWN.sub(r"\\\1", text)


def teams_payload(message: AlertMessage) -> dict[str, Any]:
    """An Adaptive Card (1.4) in a message envelope: what Teams Workflows webhooks and
    Power Automate accept (the older Office 365 connector MessageCard is being retired)."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _teams_escape(message.subject),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": "Attention" if message.severity.rank >= 3 else "Default",
        },
        {
            "type": "FactSet",
            "facts": [
                {"title": _teams_escape(label), "value": _teams_escape(value)}
                for label, value in message.facts()
            ],
        },
    ]
    for line in message.event_lines():
        body.append(
            {"type": "TextBlock", "text": _teams_escape(line), "wrap": True, "isSubtle": True}
        )
    if note := message.suppressed_note():
        body.append({"type": "TextBlock", "text": _teams_escape(note), "wrap": True})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": [
            {"type": "Action.OpenUrl", "title": message.text("open"), "url": message.console_url}
        ],
    }
    return {
        "type": "message",
        "summary": message.subject,
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def generic_payload(message: AlertMessage) -> dict[str, Any]:
    """A documented, versioned JSON object for any other receiver."""
    return {
        "version": 1,
        "subject": message.subject,
        "text": message.plain_text(),
        "alert": {
            "id": message.alert_id,
            "rule_id": message.rule_id,
            "rule_title": message.rule_title,
            "severity": message.severity.value,
            "hostname": message.hostname,
            "group": message.group,
            "first_seen": format_us(message.first_seen_us),
            "last_seen": format_us(message.last_seen_us),
            "count": message.count,
            "summary": list(message.summary),
            "more_events": message.more_events,
            "suppressed_before": message.suppressed_before,
            "url": message.console_url,
        },
    }


PAYLOADS = {"slack": slack_payload, "teams": teams_payload, "json": generic_payload}


class WebhookTransport(Transport):
    """POSTs each alert as JSON in the configured format."""

    kind: ClassVar[str] = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        settings.check()
        self.settings = settings
        self._allowed = parse_networks(settings.allow_networks, "allow_networks")
        try:
            self._tls = ssl.create_default_context(cafile=settings.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise NotifyConfigError(f"ca_file: cannot load {settings.ca_file}: {exc}") from exc

    def notify(self, message: AlertMessage) -> None:
        body = msgspec.json.encode(PAYLOADS[self.settings.format](message))
        reply = post_json(
            self.settings.url,
            body,
            allowed=self._allowed,
            timeout=self.settings.timeout_seconds,
            max_response_bytes=self.settings.max_response_bytes,
            tls_context=self._tls,
        )
        if 200 <= reply.status < 300:
            return
        detail = reply.body[:200].decode("utf-8", "replace")
        reason = f"HTTP {reply.status}: {' '.join(detail.split())}".strip()
        if 300 <= reply.status < 400:
            # A redirect is not followed: it could lead anywhere, past the address check.
            raise TransportError(f"{reason} (redirect not followed)", permanent=True)
        # 408 and 429 say "later"; 5xx may pass; any other 4xx will not change.
        permanent = reply.status < 500 and reply.status not in (408, 429)
        raise TransportError(reason, permanent=permanent)
