"""``sekimori operator|operators|sign|action|library`` on a real data directory
(SQLite), in-process: key files, keyring init and change by quorum, offline signing,
commands and their audit trail."""

from __future__ import annotations

import getpass
import json
import re
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from sekimori.cli.main import main
from sekimori.protocol.signing import decode_keyring, decode_signed_keyring
from sekimori.server.bootstrap import open_store
from sekimori.server.store.audit import search_audit
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.schema import devices
from sekimori.settings import Settings

DEVICE = "11111111-2222-4333-8444-555555555555"
ACTOR = f"cli:{getpass.getuser()}"


def _run(data: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data(tmp_path: Path, no_sekimori_environment: None) -> Path:
    data = tmp_path / "var"
    assert main(["--data-dir", str(data), "init"]) == 0
    engine = open_store(Settings(data_dir=str(data)))
    with engine.begin() as conn:
        conn.execute(
            sa.insert(devices).values(
                id=DEVICE,
                hostname="pc",
                os="linux",
                os_version="x",
                agent_version="0.1.0",
                group_id=ensure_group(conn, "sales"),
                cert_serial="1",
                enrolled_us=1,
                connected=False,
                acked_seq=0,
                outbox_events=0,
                dropped_total=0,
            )
        )
    engine.dispose()
    return data


def test_operator_keys_keyring_and_signed_commands(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    secret = tmp_path / "pass"
    secret.write_text("correct horse\n")
    code, out, _ = _run(
        data,
        capsys,
        "operator",
        "keygen",
        "--out",
        str(tmp_path / "alice.pem"),
        "--name",
        "alice",
        "--passphrase-file",
        str(secret),
    )
    assert code == 0
    assert stat.S_IMODE((tmp_path / "alice.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED" in (tmp_path / "alice.pem").read_bytes()
    alice_id = re.search(r"key id:\s+([0-9a-f]{64})", out)
    assert alice_id
    assert _run(data, capsys, "operator", "keygen", "--out", str(tmp_path / "bob.pem"),
                "--name", "bob")[0] == 0  # fmt: skip
    # The key file is never overwritten.
    code, _, err = _run(
        data, capsys, "operator", "keygen", "--out", str(tmp_path / "bob.pem"), "--name", "x"
    )
    assert code == 1 and "exists" in err

    alice_key = ["--key", str(tmp_path / "alice.pem"), "--passphrase-file", str(secret)]
    bob_key = ["--key", str(tmp_path / "bob.pem")]
    code, out, err = _run(
        data,
        capsys,
        "operators",
        "init",
        "--key",
        str(tmp_path / "alice.pub.pem"),
        "--key",
        str(tmp_path / "bob.pub.pem"),
        "--quorum",
        "2",
        "--fleet-threshold",
        "5",
    )
    assert code == 0, err
    fingerprint = re.search(r"SHA256:([0-9a-f]{64})", out)
    assert fingerprint
    code, out, _ = _run(data, capsys, "token", "create", "--group", "sales")
    assert f"--operators SHA256:{fingerprint.group(1)}" in out

    # Changing the keyring needs both operators.
    _run(data, capsys, "operator", "keygen", "--out", str(tmp_path / "carol.pem"), "--name", "c")
    code, out, err = _run(
        data, capsys, "operators", "propose", "--add", str(tmp_path / "carol.pub.pem")
    )
    assert code == 0, err
    assert "Proposal 1: keyring version 2, needs 2" in out
    code, out, err = _run(data, capsys, "operators", "sign", "1", *alice_key)
    assert code == 0, err
    assert "1/2 operator(s) signed" in out and "OPERATOR KEYRING version 2" in err
    # Bob signs offline: export, sign elsewhere, attach.
    request, signature = tmp_path / "kr.bin", tmp_path / "kr.sig"
    assert _run(data, capsys, "operators", "export", "1", "--out", str(request))[0] == 0
    code, _, err = _run(data, capsys, "sign", str(request), *bob_key, "--out", str(signature))
    assert code == 0 and "keys:" in err
    code, out, err = _run(data, capsys, "operators", "attach", "1", str(signature))
    assert code == 0, err
    assert "published" in out
    code, out, _ = _run(data, capsys, "operators", "show", "--out", str(tmp_path / "kr"))
    assert "version 2" in out and "proposal" not in out
    shown = decode_signed_keyring((tmp_path / "kr").read_bytes())
    assert decode_keyring(shown.body).version == 2 and len(shown.signatures) == 2

    # A command above nothing: one operator; signed at creation with --key.
    code, out, err = _run(
        data, capsys, "action", "create", "lock", "--device", DEVICE[:8], *alice_key, "--json"
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["state"] == "ready" and created["needed_signers"] == 1
    # Offline signing of a command says what it approves, in words.
    code, out, err = _run(
        data,
        capsys,
        "action",
        "create",
        "restart",
        "--group",
        "sales",
        "--param",
        "delay_seconds=30",
        "--param",
        "message=patch day",
        "--reason",
        "updates",
    )
    assert code == 0, err
    nonce = re.search(r"Command ([0-9a-f]{32})", out)
    assert nonce
    assert _run(data, capsys, "action", "export", nonce.group(1), "--out", str(request))[0] == 0
    code, _, err = _run(data, capsys, "sign", str(request), *bob_key, "--out", str(signature))
    assert "COMMAND restart on 1 device(s)" in err
    assert "delay_seconds=30" in err and "message='patch day'" in err and "reason: updates" in err
    code, out, err = _run(data, capsys, "action", "attach", nonce.group(1), str(signature))
    assert code == 0, err
    assert "ready" in out
    # The same signature again is refused with a clear message.
    code, _, err = _run(data, capsys, "action", "attach", nonce.group(1), str(signature))
    assert code == 1 and "takes no more signatures" in err
    code, out, _ = _run(data, capsys, "action", "status", nonce.group(1))
    assert "restart  ready  signed by bob (1/1)" in out and f"{DEVICE}  pending" in out
    code, out, _ = _run(data, capsys, "action", "list")
    assert out.count("\n") == 2

    # Bad input changes nothing.
    code, _, err = _run(
        data, capsys, "action", "create", "lock", "--param", "user", "--device", DEVICE
    )
    assert code == 1 and "NAME=VALUE" in err
    code, _, err = _run(data, capsys, "action", "create", "format_disk", "--device", DEVICE)
    assert code == 1 and "unknown action" in err
    code, _, err = _run(
        data, capsys, "action", "create", "restart", "--param", "delay_seconds=9999",
        "--device", DEVICE,
    )  # fmt: skip
    assert code == 1 and "invalid parameters for restart" in err
    code, _, err = _run(data, capsys, "operators", "sign", "1", *bob_key)
    assert code == 1 and "published" in err
    code, out, _ = _run(data, capsys, "operators", "propose", "--quorum", "1")
    assert code == 0 and "Proposal 2" in out
    code, out, _ = _run(data, capsys, "operators", "withdraw", "2")
    assert code == 0 and "withdrawn" in out
    code, _, err = _run(data, capsys, "operators", "sign", "2", *bob_key)
    assert code == 1 and "withdrawn" in err

    engine = open_store(Settings(data_dir=str(data)))
    try:
        logged = [e.action for e in search_audit(engine, actor=ACTOR, limit=100).entries]
    finally:
        engine.dispose()
    for action in ("operators.init", "operators.publish", "action.create", "action.sign"):
        assert action in logged


def test_library_add_and_run_script_by_name(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(data, capsys, "operator", "keygen", "--out", str(tmp_path / "k.pem"), "--name", "ann")
    _run(data, capsys, "operators", "init", "--key", str(tmp_path / "k.pub.pem"))
    script = tmp_path / "cleanup.sh"
    script.write_bytes(b"#!/bin/sh\nrm -rf /tmp/cache\n")
    code, out, err = _run(data, capsys, "library", "add", str(script), "--kind", "script")
    assert code == 0, err
    assert "script cleanup: sha256" in out
    code, out, _ = _run(data, capsys, "library", "list")
    assert "cleanup.sh" in out and "(sh)" in out
    code, _, err = _run(
        data, capsys, "library", "add", str(script), "--kind", "package", "--name", "x"
    )
    assert code == 1 and ".deb" in err
    code, out, err = _run(
        data, capsys, "action", "create", "run_script", "--param", "name=cleanup",
        "--device", DEVICE, "--key", str(tmp_path / "k.pem"), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["state"] == "ready"
    code, _, err = _run(
        data, capsys, "action", "create", "run_script", "--param", "name=nope",
        "--device", DEVICE,
    )  # fmt: skip
    assert code == 1 and "must name one script" in err
