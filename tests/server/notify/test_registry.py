"""Targets built from plain configuration through the fixed registry."""

from __future__ import annotations

from typing import Any

import pytest

from sekimori.server.notify import (
    TRANSPORTS,
    EmailTransport,
    NotifyConfigError,
    WebhookTransport,
    build_target,
)


def test_the_registry_is_fixed() -> None:
    assert sorted(TRANSPORTS) == ["email", "webhook"]
    with pytest.raises(TypeError):
        TRANSPORTS["sms"] = TRANSPORTS["email"]  # type: ignore[index]


def test_targets_are_built_from_plain_data() -> None:
    mail = build_target(
        "ops-mail",
        "email",
        {"host": "smtp.example.com", "sender": "a@example.com", "recipients": ["b@example.com"]},
    )
    assert isinstance(mail, EmailTransport) and mail.settings.effective_port == 587
    hook = build_target("chat", "webhook", {"url": "https://hooks.slack.com/x", "format": "slack"})
    assert isinstance(hook, WebhookTransport)


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        ("sms", {}, "notify target 'x': unknown kind 'sms' (one of ['email', 'webhook'])"),
        ("webhook", {}, "notify target 'x': Object missing required field `url`"),
        (
            "webhook",
            {"url": "https://h.example/", "format": "discord"},
            "notify target 'x': Invalid enum value 'discord' - at `$.format`",
        ),
        (
            "email",
            {"host": "h", "sender": "a@b.c", "recipients": ["b@c.d"], "port": "25"},
            "notify target 'x': Expected `int`, got `str` - at `$.port`",
        ),
        (
            "email",
            {"host": "h", "sender": "a@b.c", "recipients": ["b@c.d"], "pasword": "typo"},
            "notify target 'x': Object contains unknown field `pasword`",
        ),
        ("webhook", {"url": "gopher://h/"}, "notify target 'x': url: only http and https"),
    ],
)
def test_bad_configuration_names_the_target_and_field(
    kind: str, data: dict[str, Any], message: str
) -> None:
    with pytest.raises(NotifyConfigError) as caught:
        build_target("x", kind, data)
    assert str(caught.value).startswith(message)
