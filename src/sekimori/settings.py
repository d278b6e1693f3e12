"""One typed settings class for every part of Sekimori.

Settings come, in rising priority, from the defaults below, a TOML file, and
``SEKIMORI_*`` environment variables. Nested keys use a double underscore:
``SEKIMORI_SERVER__AGENT_PORT=9443`` sets ``[server] agent_port``. Any key may
instead be given as ``<KEY>_FILE`` naming a file that holds the value (for
secrets mounted by an orchestrator).

This module is imported by the agent, so it must stay light: msgspec and the
standard library only.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = [
    "AgentSettings",
    "EmailTargetSettings",
    "LogSettings",
    "NotifyRouteSettings",
    "NotifySettings",
    "RateLimitSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "VulnFeedSource",
    "VulnSettings",
    "WebhookTargetSettings",
    "load_settings",
]

ENV_PREFIX = "SEKIMORI_"
MiB = 1024 * 1024


class SettingsError(Exception):
    """The configuration is invalid; the message names the key and the problem."""


class LogSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


Severity = Literal["info", "low", "medium", "high", "critical"]


class RateLimitSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A token bucket per (target, rule, severity): ``burst`` at once, then ``per_hour``."""

    per_hour: float = 10.0
    burst: int = 3


class EmailTargetSettings(
    msgspec.Struct, tag="email", tag_field="kind", forbid_unknown_fields=True, kw_only=True
):
    """``kind = "email"``: mail over SMTP (docs/notifications.md). The password is never
    inline in the config file: ``password_file`` names the file that holds it (or the
    ``..._PASSWORD_FILE`` environment variable, which the loader reads into ``password``)."""

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
    rate_limit: RateLimitSettings | None = None


class WebhookTargetSettings(
    msgspec.Struct, tag="webhook", tag_field="kind", forbid_unknown_fields=True, kw_only=True
):
    """``kind = "webhook"``: Slack, Teams or generic JSON. Internal addresses (private,
    loopback, link-local...) are refused after DNS resolution unless listed in
    ``allow_networks``."""

    url: str
    format: Literal["slack", "teams", "json"] = "json"
    allow_networks: list[str] = msgspec.field(default_factory=list)
    timeout_seconds: float = 5.0
    max_response_bytes: int = 64 * 1024
    ca_file: str = ""
    rate_limit: RateLimitSettings | None = None


NotifyTarget = EmailTargetSettings | WebhookTargetSettings


class NotifyRouteSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Alerts of a rule matching one of ``rules`` (globs: ``builtin.*``, ``*``) at
    ``min_severity`` or above go to ``targets``."""

    targets: list[str]
    rules: list[str] = msgspec.field(default_factory=lambda: ["*"])
    min_severity: Severity = "info"


class NotifySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[server.notify]``: where alerts are sent (docs/notifications.md)."""

    targets: dict[str, NotifyTarget] = msgspec.field(default_factory=dict)
    routes: list[NotifyRouteSettings] = msgspec.field(default_factory=list)
    rate_limit: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)
    # The console's address as administrators reach it, for the link in each
    # notification (default: built from console_host/console_port).
    console_url: str = ""
    locale: Literal["en", "ja"] = "en"
    poll_seconds: float = 5.0
    # A claimed alert is left alone by other replicas this long (longer than a send
    # to every target can take).
    claim_seconds: float = 300.0
    # Retryable failures: wait retry_initial_seconds, doubling up to retry_max_seconds,
    # and give up after max_attempts sends.
    retry_initial_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    max_attempts: int = 8


class VulnFeedSource(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One feed ``sekimori vuln fetch`` downloads (docs/vulnerabilities.md)."""

    kind: Literal["osv", "kev", "nvd"]
    url: str


class VulnSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[server.vuln]``: vulnerability matching and feeds (docs/vulnerabilities.md)."""

    # How often the job looks for new inventory events and feed imports.
    match_seconds: float = 60.0
    # The console warns when a feed's last good import is older than this.
    stale_days: float = 7.0
    # The compliance chart's default: a PC is compliant with no known-exploited
    # finding older than this many days (the console lets the user choose another).
    compliance_max_age_days: int = 14
    # Where ``sekimori vuln fetch`` gets feeds from (none by default: closed networks
    # import files).
    feeds: list[VulnFeedSource] = msgspec.field(default_factory=list)
    fetch_timeout_seconds: float = 300.0


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The agent-facing endpoint (TLS, WebSocket). Agents dial in here; nothing but
    # enrollment is reachable on it without a device identity.
    agent_host: str = "0.0.0.0"  # noqa: S104 - agents on the network must reach it
    agent_port: int = 8443
    # Operations/console HTTP (healthz, metrics, later the console). Loopback by default.
    console_host: str = "127.0.0.1"
    console_port: int = 8080
    # Extra DNS names / IP addresses to put in the server certificate.
    tls_names: list[str] = msgspec.field(default_factory=list)
    # SQLAlchemy URL; default is the embedded SQLite file in the data directory.
    database_url: str = ""
    # SQLite durability: FULL survives power loss, NORMAL survives process crashes.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    heartbeat_seconds: float = 15.0
    max_frame_bytes: int = 4 * MiB
    max_inflated_batch_bytes: int = 32 * MiB
    max_batch_events: int = 20_000
    # A batch whose first sequence number is further than this past what the device
    # has stored is refused as "from the future" (protects the dedup high-water mark).
    max_sequence_gap: int = 50_000_000
    revocation_poll_seconds: float = 0.2
    # Group commit: the ingest writer gathers up to this many events per transaction.
    ingest_commit_events: int = 20_000
    enrollment_token_max_hours: float = 24.0 * 30
    # The console: TLS "auto" serves HTTPS (the server certificate) unless the console
    # listens on loopback only; "off" off loopback is refused at start.
    console_tls: Literal["auto", "on", "off"] = "auto"
    # Times in the console and the hour-of-day reports use this IANA time zone.
    console_timezone: str = "UTC"
    console_session_idle_minutes: float = 60.0
    console_session_max_hours: float = 12.0
    # The URL agents dial, shown in the enrollment command (default wss://<fqdn>:port).
    public_agent_url: str = ""
    # Agents older than this are "outdated" on the dashboard (default: this server's).
    minimum_agent_version: str = ""
    # State rules (builtin.agent_offline, builtin.agent_outdated): how often they are
    # checked, and how long a PC must be silent to count as offline. The outdated rule
    # only runs when minimum_agent_version is set.
    state_rules_seconds: float = 60.0
    agent_offline_hours: float = 24.0
    # How often events past their group's retention are purged (first run shortly
    # after start).
    retention_purge_seconds: float = 3600.0
    notify: NotifySettings = msgspec.field(default_factory=NotifySettings)
    vuln: VulnSettings = msgspec.field(default_factory=VulnSettings)


class AgentSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Where the agent keeps its identity (key, certificate, pinned CA) and outbox.
    state_dir: str = "/var/lib/sekimori-agent"
    outbox_max_bytes: int = 1024 * MiB
    batch_max_events: int = 5_000
    batch_max_bytes: int = 2 * MiB
    inflight_batches: int = 4
    # After new events arrive on an idle channel, wait this long to send them together.
    batch_linger_seconds: float = 0.2
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 300.0
    connect_timeout_seconds: float = 10.0
    # Where the agent also writes the monitoring notice of a policy's notice mode, for
    # the PC's user to read (the state directory is private); "" for nowhere else.
    notice_path: str = "/run/sekimori/notice.txt"
    # Per-collector settings, by collector name ({"processes": {"interval_seconds": 2}}).
    # Each collector validates its own section at start (later: pushed by policy).
    collectors: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    # The program remote restart/shutdown actions run (``PROGRAM -r +N "message"``);
    # tests point it at a script that records its arguments (docs/actions.md).
    actions_shutdown_command: list[str] = msgspec.field(default_factory=lambda: ["shutdown"])


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    data_dir: str = "./var"
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    agent: AgentSettings = msgspec.field(default_factory=AgentSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_url(self) -> str:
        if self.server.database_url:
            return self.server.database_url
        return f"sqlite:///{(self.data_path / 'sekimori.db').resolve()}"


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn SEKIMORI_A__B[_FILE]=v into {"a": {"b": v}}."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "SEKIMORI_CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        value: Any = raw
        if key.endswith("_file"):
            key = key[: -len("_file")]
            try:
                value = Path(raw).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(f"{name}: cannot read {raw}: {exc.strerror}") from exc
            except UnicodeDecodeError as exc:
                raise SettingsError(f"{name}: {raw} is not UTF-8 text: {exc}") from exc
        if isinstance(value, str) and value.startswith("["):
            try:
                value = msgspec.json.decode(value)
            except msgspec.DecodeError as exc:
                raise SettingsError(f"{name}: not a JSON list: {exc}") from exc
        parts = key.split("__")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SettingsError(f"{name}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from a TOML file (optional) and the environment.

    The file is ``config_file``, else ``$SEKIMORI_CONFIG``, else none.
    Raises SettingsError with the offending key on any invalid value.
    """
    env = os.environ if environ is None else environ
    path = config_file or env.get("SEKIMORI_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"config file {path}: {exc.strerror}") from exc
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"config file {path}: {exc}") from exc
    _refuse_inline_passwords(data)
    data = _merge(data, _env_overrides(env))
    try:
        # strict=False lets environment strings become ints, floats and booleans.
        settings = msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from exc
    _check_console(settings.server)
    _check_jobs(settings.server)
    _check_notify(settings.server.notify)
    return settings


def _refuse_inline_passwords(file_data: Mapping[str, Any]) -> None:
    # A config file is often world-readable or committed to a repository: an SMTP
    # password belongs in a file of its own (password_file) or a mounted secret.
    server = file_data.get("server")
    notify = server.get("notify") if isinstance(server, Mapping) else None
    targets = notify.get("targets") if isinstance(notify, Mapping) else None
    if not isinstance(targets, Mapping):
        return
    for name, target in targets.items():
        if isinstance(target, Mapping) and target.get("password"):
            raise SettingsError(
                f"server.notify.targets.{name}.password: not in the config file; "
                "put it in a file readable by the server only and give password_file"
            )


def _check_jobs(server: ServerSettings) -> None:
    for key in ("state_rules_seconds", "agent_offline_hours", "retention_purge_seconds"):
        if not getattr(server, key) > 0:
            raise SettingsError(f"server.{key}: must be positive")


def _check_notify(notify: NotifySettings) -> None:
    """Routes name existing targets, numbers are in range, and each target's settings
    are valid for its transport (checked by building it: addresses, URL, networks,
    a readable password file). Builds nothing when no target is configured, so the
    agent never imports the server's notification package."""
    where = "server.notify"
    for key in ("poll_seconds", "retry_initial_seconds"):
        if not getattr(notify, key) > 0:
            raise SettingsError(f"{where}.{key}: must be positive")
    if notify.retry_max_seconds < notify.retry_initial_seconds:
        raise SettingsError(f"{where}.retry_max_seconds: less than retry_initial_seconds")
    if notify.claim_seconds < 30:
        raise SettingsError(f"{where}.claim_seconds: must be at least 30")
    if not 1 <= notify.max_attempts <= 100:
        raise SettingsError(f"{where}.max_attempts: must be between 1 and 100")
    limits = [(f"{where}.rate_limit", notify.rate_limit)] + [
        (f"{where}.targets.{name}.rate_limit", target.rate_limit)
        for name, target in notify.targets.items()
        if target.rate_limit is not None
    ]
    for key, limit in limits:
        if not limit.per_hour > 0 or limit.burst < 1:
            raise SettingsError(f"{key}: per_hour must be > 0 and burst >= 1")
    if notify.console_url and not notify.console_url.startswith(("http://", "https://")):
        raise SettingsError(f"{where}.console_url: {notify.console_url!r} is not an http(s) URL")
    for index, route in enumerate(notify.routes):
        if not route.targets:
            raise SettingsError(f"{where}.routes[{index}].targets: name at least one target")
        for target in route.targets:
            if target not in notify.targets:
                raise SettingsError(
                    f"{where}.routes[{index}].targets: no target named {target!r} "
                    f"(targets: {sorted(notify.targets)})"
                )
        if not route.rules or not all(rule.strip() for rule in route.rules):
            raise SettingsError(f"{where}.routes[{index}].rules: empty rule pattern")
    if notify.targets:
        from sekimori.server.alerting.targets import build_targets  # noqa: PLC0415 - server only

        try:
            build_targets(notify.targets)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc


def _check_console(server: ServerSettings) -> None:
    import zoneinfo  # noqa: PLC0415 - only the server needs it; the agent stays light

    try:
        zoneinfo.ZoneInfo(server.console_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(
            f"server.console_timezone: {server.console_timezone!r} is not an IANA time zone"
        ) from exc
    if server.console_session_idle_minutes <= 0 or server.console_session_max_hours <= 0:
        raise SettingsError("server.console_session_*: must be positive")
