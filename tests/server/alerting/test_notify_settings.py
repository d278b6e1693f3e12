"""``[server.notify]`` and the job settings: a full example loads; every mistake is a
SettingsError naming the key, at start (no SMTP or HTTP needed to find it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sekimori.server.alerting.targets import build_targets, targets_for
from sekimori.server.notify import EmailTransport, Severity, WebhookTransport
from sekimori.settings import (
    EmailTargetSettings,
    NotifyRouteSettings,
    Settings,
    SettingsError,
    WebhookTargetSettings,
    load_settings,
)

EXAMPLE = """
[server.notify]
console_url = "https://sekimori.example.co.jp"
locale = "ja"

[server.notify.targets.ops-mail]
kind = "email"
host = "smtp.example.co.jp"
security = "starttls"
username = "sekimori"
password_file = "{secret}"
sender = "sekimori@example.co.jp"
recipients = ["soc@example.co.jp", "it@example.co.jp"]

[server.notify.targets.slack]
kind = "webhook"
format = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXX"
rate_limit = {{ per_hour = 30, burst = 5 }}

[[server.notify.routes]]
targets = ["ops-mail"]
min_severity = "high"

[[server.notify.routes]]
targets = ["slack"]
rules = ["builtin.agent_*", "custom.*"]
"""


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret\n", encoding="utf-8")
    path = tmp_path / "sekimori.toml"
    path.write_text(text.format(secret=secret), encoding="utf-8")
    return load_settings(path, environ=environ or {})


def test_the_documented_example_loads(tmp_path: Path) -> None:
    notify = _load(tmp_path, EXAMPLE).server.notify
    mail = notify.targets["ops-mail"]
    assert isinstance(mail, EmailTargetSettings)
    assert mail.recipients == ["soc@example.co.jp", "it@example.co.jp"]
    hook = notify.targets["slack"]
    assert isinstance(hook, WebhookTargetSettings)
    assert hook.rate_limit is not None and hook.rate_limit.per_hour == 30
    built = build_targets(notify.targets)
    assert isinstance(built["ops-mail"], EmailTransport)
    assert isinstance(built["slack"], WebhookTransport)
    assert targets_for(notify.routes, "builtin.agent_offline", Severity.MEDIUM) == ["slack"]
    assert targets_for(notify.routes, "builtin.agent_outdated", Severity.HIGH) == [
        "ops-mail",
        "slack",
    ]
    assert targets_for(notify.routes, "builtin.mass_file_deletion", Severity.HIGH) == ["ops-mail"]
    assert targets_for(notify.routes, "sigma.x", Severity.LOW) == []


def test_defaults_need_no_configuration() -> None:
    settings = load_settings(environ={})
    assert settings.server.notify.targets == {}
    assert settings.server.state_rules_seconds == 60
    assert settings.server.agent_offline_hours == 24
    assert settings.server.retention_purge_seconds == 3600


def test_environment_overrides(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        EXAMPLE,
        {
            "SEKIMORI_SERVER__NOTIFY__POLL_SECONDS": "2.5",
            "SEKIMORI_SERVER__NOTIFY__TARGETS__OPS-MAIL__PORT": "2525",
            "SEKIMORI_SERVER__AGENT_OFFLINE_HOURS": "72",
        },
    )
    assert settings.server.notify.poll_seconds == 2.5
    mail = settings.server.notify.targets["ops-mail"]
    assert isinstance(mail, EmailTargetSettings) and mail.port == 2525
    assert settings.server.agent_offline_hours == 72


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('password_file = "{secret}"', 'password = "hunter2"'),
            "server.notify.targets.ops-mail.password: not in the config file",
        ),
        (
            ('targets = ["slack"]', 'targets = ["teams"]'),
            "server.notify.routes[1].targets: no target named 'teams'",
        ),
        (('kind = "webhook"', 'kind = "pager"'), "Invalid value 'pager'"),
        (
            ('"soc@example.co.jp", ', '"soc at example", '),
            "server.notify.targets.ops-mail: notify target 'ops-mail': recipients[0]",
        ),
        (
            ('url = "https://hooks', 'url = "ftp://hooks'),
            "server.notify.targets.slack: notify target 'slack': url",
        ),
        (('min_severity = "high"', 'min_severity = "urgent"'), "min_severity"),
        (("per_hour = 30", "per_hour = 0"), "server.notify.targets.slack.rate_limit"),
        (
            ('console_url = "https://', 'console_url = "javascript://'),
            "server.notify.console_url",
        ),
        (('locale = "ja"', 'locale = "ja"\nretry_initial_seconds = 0'), "retry_initial"),
        (('locale = "ja"', 'locale = "ja"\nmax_attempts = 0'), "max_attempts"),
        (('security = "starttls"', 'security = "none"'), "a login needs 'starttls' or 'tls'"),
    ],
)
def test_mistakes_are_named_at_start(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in EXAMPLE
    with pytest.raises(SettingsError, match=re.escape(message)):
        _load(tmp_path, EXAMPLE.replace(old, new))


def test_an_unreadable_password_file_is_named(tmp_path: Path) -> None:
    text = EXAMPLE.replace('password_file = "{secret}"', f'password_file = "{tmp_path}/nope"')
    with pytest.raises(SettingsError, match=r"ops-mail.*password_file"):
        _load(tmp_path, text)


def test_job_intervals_must_be_positive() -> None:
    with pytest.raises(SettingsError, match=r"server\.state_rules_seconds"):
        load_settings(environ={"SEKIMORI_SERVER__STATE_RULES_SECONDS": "0"})
    with pytest.raises(SettingsError, match=r"server\.agent_offline_hours"):
        load_settings(environ={"SEKIMORI_SERVER__AGENT_OFFLINE_HOURS": "-1"})


def test_route_globs_and_severity() -> None:
    routes = [
        NotifyRouteSettings(targets=["a"], rules=["builtin.usb_*"], min_severity="medium"),
        NotifyRouteSettings(targets=["b", "a"]),
    ]
    assert targets_for(routes, "builtin.usb_mass_storage_attached", Severity.MEDIUM) == ["a", "b"]
    assert targets_for(routes, "builtin.usb_mass_storage_attached", Severity.LOW) == ["b", "a"]
    # Case-sensitive, whole id.
    assert targets_for(routes[:1], "Builtin.usb_x", Severity.HIGH) == []
    assert targets_for(routes[:1], "x.builtin.usb_x", Severity.HIGH) == []
