"""The file, script and package handlers reached the way the agent reaches them: a
command signed by an operator (tests/operators.py), verified by the executor against
the pinned keyring, then run for real — a script's output comes back, a .deb is
installed and removed with dpkg, a symlink to /etc/shadow is not collected. (The
executor's own refusals, a script whose bytes changed after signing among them, are in
test_executor.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path

import pytest

from sekimori.agent.actions.audit_log import LOG_FILE, verify_log
from sekimori.agent.actions.executor import Executor
from sekimori.agent.actions.files import WORK_DIR
from sekimori.agent.actions.keyring import pin_keyring
from sekimori.agent.actions.local_policy import LocalActionPolicy, write_local_policy
from sekimori.protocol.actions import (
    ActionParams,
    CollectFileParams,
    InstallPackageParams,
    RemovePackageParams,
    RunScriptParams,
    merkle_proof,
)
from sekimori.protocol.messages import ActionData, ActionRequest, ActionResult, Message
from sekimori.protocol.signing import encode_signed_keyring, keyring_fingerprint
from tests.agent.actions.handler_context import PAYLOAD, build_deb
from tests.operators import Operator, command, keyring, signed_keyring

DEVICE = "device-a2"
PACKAGE = "sekimori-a2-signed-pkg"
alice = Operator("alice")


class Wire:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.sent.append(message)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    body = keyring([alice])
    raw = encode_signed_keyring(signed_keyring(body))
    pin_keyring(path, raw, "SHA256:" + keyring_fingerprint(body))
    return path


def _signed(state: Path, params: ActionParams, attachment: bytes = b"") -> ActionResult:
    devices = (DEVICE, "device-other")
    req = ActionRequest(
        command=command(params, devices, (alice,)),
        device_proof=merkle_proof(devices, DEVICE),
        attachment=attachment,
    )
    executor = Executor(state, DEVICE)
    try:
        return asyncio.run(executor.execute(req, Wire()))
    finally:
        executor.close()


def _installed(name: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.startswith("ii")


def test_signed_script_runs_and_its_output_returns(state: Path) -> None:
    script = b'echo "hello $1 from $(id -un)"; echo oops >&2; exit 4\n'
    params = RunScriptParams(
        name="hello", sha256=hashlib.sha256(script).hexdigest(), args=["world"]
    )
    result = _signed(state, params, script)
    assert (result.status, result.reason, result.exit_code) == ("failed", "exit code 4", 4)
    assert result.output == "hello world from root\noops\n"
    assert not any((state / WORK_DIR).iterdir())
    last = (state / LOG_FILE).read_text().splitlines()[-1]
    assert '"failed"' in last
    verify_log(state / LOG_FILE)


def test_signed_package_is_installed_then_removed(state: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg", "--purge", PACKAGE], check=False, capture_output=True)
    deb = build_deb(tmp_path, PACKAGE)
    try:
        install = InstallPackageParams(
            name=PACKAGE, filename=f"{PACKAGE}.deb", sha256=hashlib.sha256(deb).hexdigest()
        )
        result = _signed(state, install, deb)
        assert result.status == "done", (result.reason, result.output)
        assert _installed(PACKAGE)
        assert PAYLOAD.read_text() == f"hello from {PACKAGE} 1.0\n"
        removed = _signed(state, RemovePackageParams(name=PACKAGE, purge=True))
        assert removed.status == "done", (removed.reason, removed.output)
        assert not _installed(PACKAGE)
        assert not PAYLOAD.exists()
    finally:
        subprocess.run(["dpkg", "--purge", PACKAGE], check=False, capture_output=True)


def test_signed_collect_of_a_symlink_to_shadow_sends_nothing(state: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "report.txt").symlink_to("/etc/shadow")
    write_local_policy(state, LocalActionPolicy(collect_paths=[f"{shared}/*", "/etc/*"]))
    wire = Wire()
    devices = (DEVICE,)
    req = ActionRequest(
        command=command(CollectFileParams(path=str(shared / "report.txt")), devices, (alice,)),
        device_proof=merkle_proof(devices, DEVICE),
    )
    executor = Executor(state, DEVICE)
    try:
        result = asyncio.run(executor.execute(req, wire))
    finally:
        executor.close()
    assert result.status == "failed"
    assert result.reason == "/etc/shadow is denied by the collect policy (/etc/shadow*)"
    assert not [m for m in wire.sent if isinstance(m, ActionData)]
    assert (result.data_size, result.data_sha256) == (0, "")
