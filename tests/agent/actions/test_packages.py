"""install_package / remove_package with the real dpkg (the tests run as root): a tiny
.deb built here is installed, seen by dpkg-query, removed and purged; a package that is
not the one signed, a tampered file and essential packages are refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sekimori.agent.actions.base import Outcome
from sekimori.agent.actions.files import WORK_DIR
from sekimori.agent.actions.local_policy import LocalActionPolicy
from sekimori.agent.actions.packages import _owner_packages, install_package, remove_package
from sekimori.agent.actions.registry import load_handler
from sekimori.protocol.actions import (
    ActionParams,
    CollectFileParams,
    InstallPackageParams,
    RemovePackageParams,
    RunScriptParams,
)
from tests.agent.actions.handler_context import PAYLOAD, build_deb, context

PACKAGE = "sekimori-a2-test-pkg"


def _status(name: str) -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Version}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def _purge() -> None:
    if _status(PACKAGE):
        subprocess.run(["dpkg", "--purge", PACKAGE], check=True, capture_output=True)


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bytes]:
    _purge()
    try:
        yield build_deb(tmp_path_factory.mktemp("deb"), PACKAGE)
    finally:
        _purge()


def _install(state: Path, data: bytes, name: str = PACKAGE, signed: bytes | None = None) -> Outcome:
    params = InstallPackageParams(
        name=name,
        filename=f"{PACKAGE}.deb",
        sha256=hashlib.sha256(data if signed is None else signed).hexdigest(),
    )
    return asyncio.run(install_package(params, context(params, state, attachment=data)))


def _remove(state: Path, name: str, *, purge: bool = False) -> Outcome:
    params = RemovePackageParams(name=name, purge=purge)
    return asyncio.run(remove_package(params, context(params, state)))


def test_install_then_remove_then_purge(tmp_path: Path, deb: bytes) -> None:
    try:
        installed = _install(tmp_path, deb)
        assert installed.status == "done", (installed.reason, installed.output)
        assert _status(PACKAGE) == "ii 1.0"
        assert PAYLOAD.read_text() == f"hello from {PACKAGE} 1.0\n"
        assert f"{PACKAGE}: install ok installed\t1.0" in installed.output
        assert not list((tmp_path / WORK_DIR).iterdir())

        removed = _remove(tmp_path, PACKAGE)
        assert removed.status == "done", (removed.reason, removed.output)
        assert not PAYLOAD.exists()
        assert _status(PACKAGE)[:2] in {"", "un", "rc"}
        again = _remove(tmp_path, PACKAGE)
        assert again.status == "failed"
        assert "is not installed" in again.reason or "not known" in again.reason

        assert _install(tmp_path, deb).status == "done"
        purged = _remove(tmp_path, f"{PACKAGE}:all", purge=True)
        assert purged.status == "done", (purged.reason, purged.output)
        assert _status(PACKAGE)[:2] in {"", "un"}
    finally:
        _purge()


def test_a_package_other_than_the_signed_name_is_refused(tmp_path: Path, deb: bytes) -> None:
    outcome = _install(tmp_path, deb, name="openssh-server")
    assert outcome.status == "failed"
    assert outcome.reason == (
        f"{PACKAGE}.deb is package '{PACKAGE}', not 'openssh-server' as signed"
    )
    wrong_arch = _install(tmp_path, deb, name=f"{PACKAGE}:arm64")
    assert wrong_arch.status == "failed"
    assert "architecture 'all', not 'arm64'" in wrong_arch.reason
    assert _status(PACKAGE) == ""
    assert not list((tmp_path / WORK_DIR).iterdir())


def test_tampered_or_broken_package_files_are_refused(tmp_path: Path, deb: bytes) -> None:
    tampered = _install(tmp_path, deb[:-1] + bytes([deb[-1] ^ 1]), signed=deb)
    assert tampered.status == "failed"
    assert "do not match" in tampered.reason
    not_deb = _install(tmp_path, b"#!/bin/sh\necho hi\n")
    assert not_deb.status == "failed"
    assert "is not a Debian package" in not_deb.reason
    assert _status(PACKAGE) == ""


def test_a_failing_dpkg_reports_its_message(tmp_path: Path) -> None:
    # Depends on a package that does not exist: dpkg -i fails; its reason is given.
    root = tmp_path / "build"
    root.mkdir()
    name = PACKAGE + "-broken"
    data = build_deb(root, name)
    control = root / f"{name}-1.0" / "DEBIAN" / "control"
    control.write_text(control.read_text() + "Depends: sekimori-no-such-package-a2\n")
    out = root / "broken.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(control.parent.parent), str(out)],
        check=True,
        capture_output=True,
    )
    data = out.read_bytes()
    try:
        outcome = _install(tmp_path / "state", data, name=name)
        assert outcome.status == "failed"
        assert outcome.reason.startswith(f"dpkg -i {PACKAGE}.deb failed (exit code 1)")
        assert "sekimori-no-such-package-a2" in outcome.output
    finally:
        subprocess.run(["dpkg", "--purge", name], check=False, capture_output=True)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("dpkg", "is essential"),
        ("coreutils", "is essential"),
        ("debconf", "has priority required"),
    ],
)
def test_essential_and_required_packages_are_not_removed(
    tmp_path: Path, name: str, why: str
) -> None:
    before = _status(name)
    assert before.startswith("ii")
    outcome = _remove(tmp_path, name, purge=True)
    assert outcome.status == "failed"
    assert outcome.reason == f"package {name} {why}; not removed"
    assert _status(name) == before


def test_the_agents_own_packages_are_not_removed(tmp_path: Path) -> None:
    if _status("sekimori-agent"):
        pytest.fail("a real sekimori-agent package is installed here; not touching it")
    data = build_deb(tmp_path, "sekimori-agent")
    (tmp_path / "agent.deb").write_bytes(data)
    subprocess.run(["dpkg", "-i", str(tmp_path / "agent.deb")], check=True, capture_output=True)
    try:
        outcome = _remove(tmp_path / "state", "sekimori-agent")
        assert outcome.status == "failed"
        assert outcome.reason == "package sekimori-agent is what the agent runs on; not removed"
        assert _status("sekimori-agent") == "ii 1.0"
    finally:
        subprocess.run(["dpkg", "--purge", "sekimori-agent"], check=True, capture_output=True)
    unknown = _remove(tmp_path, "sekimori-no-such-package-a2")
    assert unknown.status == "failed"
    assert "not known to dpkg" in unknown.reason


def test_the_owner_of_the_agents_interpreter_is_found() -> None:
    # What protects the interpreter's package when the agent runs on Debian's python
    # (this venv's python is not Debian's: the lookup itself is checked here).
    python = os.path.realpath("/usr/bin/python3")
    owner = subprocess.run(
        ["dpkg-query", "-S", python], capture_output=True, text=True, check=True
    ).stdout.split(":")[0]
    found = asyncio.run(_owner_packages([python, "/nonexistent/sekimori"]))
    assert found == {owner}


@pytest.mark.parametrize(
    "params",
    [
        CollectFileParams(path="/etc/hostname"),
        RunScriptParams(name="s", sha256=hashlib.sha256(b"true\n").hexdigest()),
        InstallPackageParams(name="x", filename="x.deb", sha256="0" * 64),
        RemovePackageParams(name="x"),
    ],
    ids=lambda p: type(p).__name__,
)
def test_other_platforms_are_told_no(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: ActionParams
) -> None:
    handler = load_handler(type(params).__struct_config__.tag)  # type: ignore[arg-type]
    assert handler is not None
    monkeypatch.setattr(sys, "platform", "win32")
    ctx = context(params, tmp_path, attachment=b"true\n", policy=LocalActionPolicy())

    async def call() -> Outcome:
        return await handler(params, ctx)

    outcome = asyncio.run(call())
    assert outcome.status == "failed"
    assert outcome.reason.startswith("not supported on this platform")
