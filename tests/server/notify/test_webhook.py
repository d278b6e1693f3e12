"""Webhooks against a real HTTP server: Slack, Teams and generic JSON arrive when the
loopback network is allowed; without the allowance nothing reaches the server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sekimori.server.notify import (
    AddressRefused,
    NotifyConfigError,
    TransportError,
    WebhookSettings,
    WebhookTransport,
)
from sekimori.server.notify.webhook import slack_payload, teams_payload
from tests.server.notify.conftest import HttpServer, make_alert


def transport(url: str = "", **changes: Any) -> WebhookTransport:
    values: dict[str, Any] = {"url": url, "allow_networks": ["127.0.0.0/8"]}
    values.update(changes)
    return WebhookTransport(WebhookSettings(**values))


def test_slack_payload_arrives(http_server: HttpServer) -> None:
    transport(http_server.url(), format="slack").notify(make_alert())
    body = json.loads(http_server.requests[0].body)
    assert body["text"] == "[Sekimori] High: USB mass-storage device attached on pc-0042 (3 times)"
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": body["text"]},
    }
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "*Device*\npc-0042" in fields and "*Count*\n3" in fields
    assert body["blocks"][-1]["text"]["text"] == (
        "<https://sekimori.example/alerts/42|Open in the console>"
    )


def test_teams_adaptive_card_arrives(http_server: HttpServer) -> None:
    transport(http_server.url(), format="teams").notify(make_alert(locale="ja"))
    body = json.loads(http_server.requests[0].body)
    assert body["type"] == "message"
    attachment = body["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["端末"] == r"pc\-0042"
    assert card["actions"][0] == {
        "type": "Action.OpenUrl",
        "title": "コンソールで開く",
        "url": "https://sekimori.example/alerts/42",
    }


def test_generic_json_arrives(http_server: HttpServer) -> None:
    transport(http_server.url()).notify(make_alert(suppressed_before=37))
    body = json.loads(http_server.requests[0].body)
    assert body["version"] == 1
    assert body["alert"]["severity"] == "high"
    assert body["alert"]["first_seen"] == "2026-01-01T00:00:00Z"
    assert body["alert"]["suppressed_before"] == 37
    assert "37 more notifications" in body["text"]


def test_without_the_allowance_nothing_is_sent(http_server: HttpServer) -> None:
    hook = transport(http_server.url(), allow_networks=[])
    with pytest.raises(AddressRefused) as caught:
        hook.notify(make_alert())
    assert caught.value.permanent
    assert "127.0.0.1, a loopback address" in caught.value.reason
    assert http_server.requests == []


def test_a_name_for_loopback_is_refused_before_connecting(http_server: HttpServer) -> None:
    with pytest.raises(AddressRefused, match="localhost resolves to"):
        transport(http_server.url(host="localhost"), allow_networks=[]).notify(make_alert())
    assert http_server.requests == []


def test_redirects_are_not_followed(http_server: HttpServer) -> None:
    http_server.reply[0] = (302, {"Location": "http://169.254.169.254/latest/"}, b"")
    with pytest.raises(TransportError) as caught:
        transport(http_server.url()).notify(make_alert())
    assert caught.value.permanent
    assert caught.value.reason == "HTTP 302: (redirect not followed)"
    assert len(http_server.requests) == 1


@pytest.mark.parametrize(
    ("status", "permanent"), [(404, True), (400, True), (429, False), (408, False), (503, False)]
)
def test_http_errors_map_to_permanent_or_retryable(
    http_server: HttpServer, status: int, permanent: bool
) -> None:
    http_server.reply[0] = (status, {}, b"no_service\n")
    with pytest.raises(TransportError) as caught:
        transport(http_server.url()).notify(make_alert())
    assert caught.value.permanent is permanent
    assert caught.value.reason == f"HTTP {status}: no_service"


def test_event_text_cannot_mention_the_channel_or_forge_links() -> None:
    hostile = make_alert(hostname="<!channel> pc", summary=("[click](https://evil.example) *now*",))
    payload = slack_payload(hostile)
    # Slack reads mentions in mrkdwn text (plain_text, as in the header, is never parsed).
    mrkdwn = [payload["text"]] + [
        text["text"]
        for block in payload["blocks"]
        for text in [block.get("text", {}), *block.get("fields", [])]
        if text.get("type") == "mrkdwn"
    ]
    assert "*Device*\n&lt;!channel&gt; pc" in mrkdwn
    assert not [text for text in mrkdwn if "<!channel>" in text]
    teams = teams_payload(hostile)["attachments"][0]["content"]["body"]
    assert teams[2]["text"] == r"\[click\]\(https://evil\.example\) \*now\*"


@pytest.mark.parametrize(
    ("changes", "start"),
    [
        ({"url": "ftp://x.example/"}, "url: "),
        ({"allow_networks": ["10.0.0.1/8"]}, "allow_networks[0]: "),
        ({"timeout_seconds": 60}, "timeout_seconds: "),
        ({"max_response_bytes": 0}, "max_response_bytes: "),
    ],
)
def test_bad_settings_name_the_field(changes: dict[str, Any], start: str) -> None:
    with pytest.raises(NotifyConfigError) as caught:
        transport(**({"url": "https://hooks.example/x"} | changes))
    assert str(caught.value).startswith(start)
