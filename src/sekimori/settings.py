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
    "LogSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "load_settings",
]

ENV_PREFIX = "SEKIMORI_"
MiB = 1024 * 1024


class SettingsError(Exception):
    """The configuration is invalid; the message names the key and the problem."""


class LogSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


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
    # Per-collector settings, by collector name ({"processes": {"interval_seconds": 2}}).
    # Each collector validates its own section at start (later: pushed by policy).
    collectors: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


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
    data = _merge(data, _env_overrides(env))
    try:
        # strict=False lets environment strings become ints, floats and booleans.
        settings = msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from exc
    _check_console(settings.server)
    return settings


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
