"""The ``sekimori`` command, run as a real process (``python -m sekimori``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sekimori.cli.common import CommandError, parse_duration
from sekimori.cli.main import build_parser
from sekimori.server.pki import PKI

SUBCOMMANDS = [
    ("server",),
    ("init",),
    ("token", "create"),
    ("device", "list"),
    ("device", "revoke"),
    ("events",),
    ("rollup", "rebuild"),
    ("screens", "rotate-key"),
    ("user", "add"),
    ("user", "list"),
    ("user", "passwd"),
    ("user", "disable"),
    ("user", "enable"),
    ("audit", "verify"),
    ("audit", "list"),
    ("agent", "run"),
    ("agent", "enroll"),
    ("agent", "notice"),
    ("agent", "trust-operators"),
    ("agent", "actions-log"),
    ("demo",),
    ("bench", "ingest"),
    ("bench", "agent"),
    ("bench", "console"),
    ("bench", "screens"),
    ("bench", "live"),
    ("operator", "keygen"),
    ("operators", "init"),
    ("operators", "show"),
    ("operators", "propose"),
    ("operators", "sign"),
    ("operators", "export"),
    ("operators", "attach"),
    ("operators", "withdraw"),
    ("sign",),
    ("action", "create"),
    ("action", "sign"),
    ("action", "export"),
    ("action", "attach"),
    ("action", "status"),
    ("action", "list"),
    ("library", "add"),
    ("library", "list"),
    ("bench", "actions"),
    ("bench", "vuln"),
    ("vuln", "import"),
    ("vuln", "fetch"),
    ("vuln", "status"),
]


def _env() -> dict[str, str]:
    # The developer's own SEKIMORI_* settings must not leak into these runs.
    return {k: v for k, v in os.environ.items() if not k.startswith("SEKIMORI_")}


def sekimori(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "sekimori", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=60,
        check=False,
    )


# ---- help -------------------------------------------------------------------------


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    # In process: the parser is what a real process runs (the top-level help and the
    # usage error below run as real processes); 80 interpreter starts cost minutes.
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"usage: sekimori {' '.join(command)}")
    # The description paragraph: a sentence after the usage block.
    paragraphs = out.split("\n\n")
    assert len(paragraphs) >= 3
    description = paragraphs[1].strip()
    assert len(description) > 20
    assert description.endswith(".")


def test_the_help_list_is_complete() -> None:
    # Every leaf subcommand the parser knows is in SUBCOMMANDS (and so has a help test).
    import argparse

    def leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {prefix}
        out: set[tuple[str, ...]] = set()
        for name, child in subs[0].choices.items():
            out |= leaves(child, (*prefix, name))
        return out

    assert leaves(build_parser(), ()) == set(SUBCOMMANDS)


def test_top_level_help_lists_the_commands() -> None:
    result = sekimori("--help")
    assert result.returncode == 0
    for name in ("server", "init", "token", "device", "events", "agent", "demo", "bench"):
        assert name in result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = sekimori()
    assert result.returncode == 2
    assert "usage: sekimori" in result.stderr
    assert "Traceback" not in result.stderr


def test_enroll_requires_its_arguments() -> None:
    result = sekimori("agent", "enroll")
    assert result.returncode == 2
    assert "--server" in result.stderr
    assert "Traceback" not in result.stderr


# ---- durations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        (" 2 m ", 120.0),
        ("1h\n", 3600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "1", "h", "1w", "-1h", "1hh", "1.h", ".5h", "1h30m", "one hour", "1H"]
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(CommandError, match=re.escape(f"invalid duration {text!r}")):
        parse_duration(text)


# ---- agent --------------------------------------------------------------------------


def test_agent_run_without_enrollment_says_so(tmp_path: Path) -> None:
    state = tmp_path / "agent-state"
    state.mkdir()
    result = sekimori("agent", "run", "--state-dir", str(state))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("sekimori: error: ")
    assert "not enrolled" in result.stderr
    assert "sekimori agent enroll" in result.stderr
    assert result.stdout == ""
    # Nothing is created in a state directory the agent cannot use.
    assert list(state.iterdir()) == []


def test_agent_run_with_a_damaged_ca_says_so(tmp_path: Path) -> None:
    state = tmp_path / "agent-state"
    state.mkdir()
    (state / "identity.json").write_text(
        '{"device_id": "d", "server_url": "wss://localhost:8443", "ca_fingerprint": "'
        + "0" * 64
        + '"}',
        encoding="utf-8",
    )
    (state / "ca.crt").write_text("not a certificate", encoding="ascii")
    result = sekimori("agent", "run", "--state-dir", str(state))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "ca.crt" in result.stderr


def test_missing_config_file_is_a_clean_error(tmp_path: Path) -> None:
    result = sekimori(
        "--config", str(tmp_path / "absent.toml"), "agent", "run", "--state-dir", str(tmp_path)
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "sekimori: error: config file" in result.stderr


# ---- init ---------------------------------------------------------------------------

FINGERPRINT = re.compile(r"^CA fingerprint \(agents pin this\): SHA256:([0-9a-f]{64})$", re.M)
PASSWORD = re.compile(r"^First administrator: admin / (\S+)  \(shown only once\)$", re.M)


def test_init_creates_the_data_dir_and_is_idempotent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = sekimori("--data-dir", str(data), "init")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    fingerprint = FINGERPRINT.search(first.stdout)
    password = PASSWORD.search(first.stdout)
    assert fingerprint is not None, first.stdout
    assert password is not None, first.stdout
    assert len(password.group(1)) >= 16
    # The printed fingerprint is the CA's on disk.
    assert fingerprint.group(1) == PKI(data / "pki").ca_fingerprint()
    assert (data / "sekimori.db").is_file()
    assert oct((data / "pki" / "ca.key").stat().st_mode & 0o777) == oct(0o600)

    second = sekimori("--data-dir", str(data), "init")
    assert second.returncode == 0, second.stderr
    again = FINGERPRINT.search(second.stdout)
    assert again is not None
    assert again.group(1) == fingerprint.group(1)
    assert PASSWORD.search(second.stdout) is None
    assert "First administrator" not in second.stdout
    assert password.group(1) not in second.stdout + second.stderr
