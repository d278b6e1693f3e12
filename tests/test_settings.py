"""Settings: defaults, a TOML file, SEKIMORI_* environment variables, *_FILE secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from sekimori.settings import (
    AgentSettings,
    LogSettings,
    ServerSettings,
    Settings,
    SettingsError,
    load_settings,
)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sekimori.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.data_dir == "./var"
    assert settings.log == LogSettings(level="INFO", format="text")
    assert settings.server.agent_port == 8443
    assert settings.server.console_host == "127.0.0.1"
    assert settings.server.sqlite_synchronous == "FULL"
    assert settings.server.tls_names == []
    assert settings.agent == AgentSettings()
    assert settings.agent.outbox_max_bytes == 1024 * 1024 * 1024


def test_default_lists_are_not_shared() -> None:
    a, b = ServerSettings(), ServerSettings()
    a.tls_names.append("x")
    assert b.tls_names == []


def test_database_url_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(environ={"SEKIMORI_DATA_DIR": str(tmp_path / "d")})
    assert settings.data_path == tmp_path / "d"
    assert settings.database_url == f"sqlite:///{(tmp_path / 'd' / 'sekimori.db').resolve()}"
    explicit = load_settings(environ={"SEKIMORI_SERVER__DATABASE_URL": "postgresql://h/db"})
    assert explicit.database_url == "postgresql://h/db"


def test_toml_file(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
data_dir = "/srv/sekimori"

[log]
level = "DEBUG"
format = "json"

[server]
agent_port = 9443
tls_names = ["sekimori.example", "10.0.0.5"]
heartbeat_seconds = 5

[agent]
batch_max_events = 100
""",
    )
    settings = load_settings(path, environ={})
    assert settings.data_dir == "/srv/sekimori"
    assert settings.log == LogSettings(level="DEBUG", format="json")
    assert settings.server.agent_port == 9443
    assert settings.server.tls_names == ["sekimori.example", "10.0.0.5"]
    assert settings.server.heartbeat_seconds == 5.0
    assert isinstance(settings.server.heartbeat_seconds, float)
    assert settings.agent.batch_max_events == 100
    # Untouched keys keep their defaults.
    assert settings.server.console_port == 8080
    assert settings.agent.inflight_batches == 4


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[server]\nagent_port = 1234\n")
    settings = load_settings(environ={"SEKIMORI_CONFIG": str(path)})
    assert settings.server.agent_port == 1234


def test_explicit_config_file_wins_over_the_environment_one(tmp_path: Path) -> None:
    explicit = _toml(tmp_path, "[server]\nagent_port = 1\n")
    other = tmp_path / "other.toml"
    other.write_text("[server]\nagent_port = 2\n", encoding="utf-8")
    settings = load_settings(explicit, environ={"SEKIMORI_CONFIG": str(other)})
    assert settings.server.agent_port == 1


def test_environment_overrides_the_file_key_by_key(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[server]\nagent_port = 9443\nconsole_port = 9080\n")
    settings = load_settings(
        path,
        environ={
            "SEKIMORI_SERVER__AGENT_PORT": "10443",
            "SEKIMORI_LOG__FORMAT": "json",
            "SEKIMORI_DATA_DIR": "/data",
            "UNRELATED": "ignored",
            "sekimori_lowercase_prefix": "ignored",
        },
    )
    assert settings.server.agent_port == 10443
    assert settings.server.console_port == 9080  # from the file, not reset by the env
    assert settings.log.format == "json"
    assert settings.data_dir == "/data"


def test_environment_strings_become_numbers() -> None:
    settings = load_settings(
        environ={
            "SEKIMORI_SERVER__MAX_FRAME_BYTES": "1048576",
            "SEKIMORI_SERVER__HEARTBEAT_SECONDS": "2.5",
            "SEKIMORI_AGENT__BACKOFF_MAX_SECONDS": "60",
        }
    )
    assert settings.server.max_frame_bytes == 1048576
    assert isinstance(settings.server.max_frame_bytes, int)
    assert settings.server.heartbeat_seconds == 2.5
    assert settings.agent.backoff_max_seconds == 60.0
    assert isinstance(settings.agent.backoff_max_seconds, float)


def test_file_variant_reads_the_value_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "db_url"
    secret.write_text("postgresql://user:s3cret@db/sekimori\n", encoding="utf-8")
    port = tmp_path / "port"
    port.write_text("7443", encoding="utf-8")
    settings = load_settings(
        environ={
            "SEKIMORI_SERVER__DATABASE_URL_FILE": str(secret),
            "SEKIMORI_SERVER__AGENT_PORT_FILE": str(port),
        }
    )
    assert settings.server.database_url == "postgresql://user:s3cret@db/sekimori"
    assert settings.server.agent_port == 7443


def test_missing_secret_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SEKIMORI_SERVER__DATABASE_URL_FILE"):
        load_settings(environ={"SEKIMORI_SERVER__DATABASE_URL_FILE": str(tmp_path / "nope")})


def test_secret_file_that_is_not_text_is_a_settings_error(tmp_path: Path) -> None:
    secret = tmp_path / "binary"
    secret.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SettingsError, match="SEKIMORI_SERVER__DATABASE_URL_FILE"):
        load_settings(environ={"SEKIMORI_SERVER__DATABASE_URL_FILE": str(secret)})


def test_json_list_from_the_environment() -> None:
    settings = load_settings(environ={"SEKIMORI_SERVER__TLS_NAMES": '["a.example", "10.1.2.3"]'})
    assert settings.server.tls_names == ["a.example", "10.1.2.3"]


def test_json_list_from_a_file(tmp_path: Path) -> None:
    names = tmp_path / "names"
    names.write_text('["from-file.example"]\n', encoding="utf-8")
    settings = load_settings(environ={"SEKIMORI_SERVER__TLS_NAMES_FILE": str(names)})
    assert settings.server.tls_names == ["from-file.example"]


def test_bad_json_list_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"SEKIMORI_SERVER__TLS_NAMES: not a JSON list"):
        load_settings(environ={"SEKIMORI_SERVER__TLS_NAMES": '["a", '})


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"SEKIMORI_SERVER__AGENT_PORT": "eighty"}, "server.agent_port"),
        ({"SEKIMORI_SERVER__HEARTBEAT_SECONDS": "soon"}, "server.heartbeat_seconds"),
        ({"SEKIMORI_LOG__LEVEL": "LOUD"}, "log.level"),
        ({"SEKIMORI_LOG__FORMAT": "xml"}, "log.format"),
        ({"SEKIMORI_SERVER__SQLITE_SYNCHRONOUS": "OFF"}, "server.sqlite_synchronous"),
        ({"SEKIMORI_AGENT__BATCH_MAX_EVENTS": "[1]"}, "agent.batch_max_events"),
        ({"SEKIMORI_SERVER__TLS_NAMES": "[1, 2]"}, "server.tls_names"),
    ],
)
def test_invalid_values_name_the_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError, match=rf"`\$\.{key}"):
        load_settings(environ=environ)


def test_invalid_value_in_the_file_names_the_key(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[agent]\noutbox_max_bytes = "lots"\n')
    with pytest.raises(SettingsError, match=r"\$\.agent\.outbox_max_bytes"):
        load_settings(path, environ={})


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("agent_port = 1\n", "agent_port"),
        ("[server]\nagent_prot = 1\n", "agent_prot"),
        ("[logging]\nlevel = 'INFO'\n", "logging"),
    ],
)
def test_unknown_key_in_the_file_is_refused(tmp_path: Path, text: str, name: str) -> None:
    with pytest.raises(SettingsError, match=f"unknown field `{name}`"):
        load_settings(_toml(tmp_path, text), environ={})


def test_unknown_key_in_the_environment_is_refused() -> None:
    with pytest.raises(SettingsError, match="unknown field `bogus`"):
        load_settings(environ={"SEKIMORI_SERVER__BOGUS": "1"})


def test_section_given_a_plain_value_is_refused() -> None:
    with pytest.raises(SettingsError, match="server"):
        load_settings(environ={"SEKIMORI_SERVER": "x", "SEKIMORI_SERVER__AGENT_PORT": "1"})
    with pytest.raises(SettingsError, match="server"):
        load_settings(environ={"SEKIMORI_SERVER__AGENT_PORT": "1", "SEKIMORI_SERVER": "x"})


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(SettingsError, match=rf"config file {missing}"):
        load_settings(missing, environ={})
    with pytest.raises(SettingsError, match="config file"):
        load_settings(environ={"SEKIMORI_CONFIG": str(missing)})


def test_invalid_toml_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file"):
        load_settings(_toml(tmp_path, "[server\nagent_port = 1\n"), environ={})


def test_config_file_that_is_not_utf8_is_a_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('data_dir = "/srv/sekimori-\u00e9"\n'.encode("latin-1"))
    with pytest.raises(SettingsError, match="config file"):
        load_settings(path, environ={})


def test_settings_are_built_per_call() -> None:
    # No module-level settings: every call is independent.
    a = load_settings(environ={"SEKIMORI_SERVER__AGENT_PORT": "1"})
    b = load_settings(environ={})
    assert a.server.agent_port == 1
    assert b.server.agent_port == 8443
