"""collect_file on real files: what is allowed arrives byte for byte; symlinks, denied
paths, special files and big files are refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.agent.actions.base import Outcome
from sekimori.agent.actions.files import (
    WORK_DIR,
    CollectRefused,
    _open_no_follow,
    collect_file,
    glob_match,
)
from sekimori.protocol.actions import CollectFileParams
from tests.agent.actions.handler_context import CollectPolicyValues, context


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret").mkdir()
    return tmp_path


def _policy(tree: Path, **kw: object) -> CollectPolicyValues:
    values: dict[str, object] = {
        "collect_paths": [f"{tree}/data/**"],
        "deny_paths": [f"{tree}/secret/**"],
    }
    values.update(kw)
    return CollectPolicyValues(**values)  # type: ignore[arg-type]


def _collect(
    tree: Path, path: Path | str, policy: CollectPolicyValues | None = None, **kw: int
) -> Outcome:
    params = CollectFileParams(path=str(path), **kw)
    ctx = context(params, tree / "state", policy=policy or _policy(tree))
    return asyncio.run(collect_file(params, ctx))


def _refused(outcome: Outcome, words: str) -> None:
    assert outcome.status == "failed", outcome
    assert outcome.data_path is None
    assert words in outcome.reason, outcome.reason


def test_collected_bytes_and_hash_match(tree: Path) -> None:
    content = os.urandom(300_000)
    source = tree / "data" / "logs" / "app.log"
    source.parent.mkdir()
    source.write_bytes(content)
    outcome = _collect(tree, source)
    assert outcome.status == "done", outcome.reason
    assert outcome.data_path is not None
    assert outcome.data_path.parent == tree / "state" / WORK_DIR
    assert outcome.data_path.read_bytes() == content
    assert stat.S_IMODE(outcome.data_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tree / "state" / WORK_DIR).stat().st_mode) == 0o700
    assert hashlib.sha256(content).hexdigest() in outcome.output
    # A snapshot: the source changing afterwards does not change what is sent.
    source.write_bytes(b"changed")
    assert outcome.data_path.read_bytes() == content


def test_symlink_to_denied_or_unallowed_file_is_refused(tree: Path) -> None:
    (tree / "secret" / "token").write_text("s3cret")
    (tree / "elsewhere.txt").write_text("not allowed")
    (tree / "data" / "to-secret").symlink_to(tree / "secret" / "token")
    (tree / "data" / "to-shadow").symlink_to("/etc/shadow")
    (tree / "data" / "to-elsewhere").symlink_to(tree / "elsewhere.txt")
    (tree / "data" / "dir-link").symlink_to(tree / "secret")
    _refused(_collect(tree, tree / "data" / "to-secret"), "denied")
    _refused(_collect(tree, tree / "data" / "to-shadow"), "/etc/shadow is denied")
    _refused(_collect(tree, tree / "data" / "to-elsewhere"), "not in the paths")
    _refused(_collect(tree, tree / "data" / "dir-link" / "token"), "denied")
    _refused(_collect(tree, f"{tree}/data/../secret/token"), "denied")
    work = tree / "state" / WORK_DIR
    assert not work.exists() or not list(work.iterdir())


def test_a_symlink_inside_the_allowed_tree_is_followed(tree: Path) -> None:
    (tree / "data" / "real.txt").write_text("fine")
    (tree / "data" / "alias.txt").symlink_to(tree / "data" / "real.txt")
    outcome = _collect(tree, tree / "data" / "alias.txt")
    assert outcome.status == "done", outcome.reason
    assert outcome.data_path is not None
    assert outcome.data_path.read_bytes() == b"fine"


def test_default_denied_paths_win_over_the_allowed_globs(tree: Path) -> None:
    policy = _policy(tree, collect_paths=["/etc/**", f"{tree}/**"], deny_paths=[])
    _refused(_collect(tree, "/etc/shadow", policy), "/etc/shadow is denied")
    _refused(_collect(tree, "/etc/gshadow", policy), "is denied")
    ssh = tree / "data" / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text("ssh-ed25519 AAAA")
    (tree / "data" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    (tree / "data" / "server.key").write_text("-----BEGIN PRIVATE KEY-----")
    _refused(_collect(tree, ssh / "authorized_keys", policy), "**/.ssh/**")
    _refused(_collect(tree, tree / "data" / "id_ed25519", policy), "is denied")
    _refused(_collect(tree, tree / "data" / "server.key", policy), "is denied")
    # The agent's own state directory (its key, its nonces, its policy).
    (tree / "state" / "identity.json").write_text("{}")
    _refused(_collect(tree, tree / "state" / "identity.json", policy), "is denied")
    # /etc/hostname is allowed by /etc/** and by nothing else: it arrives.
    outcome = _collect(tree, "/etc/hostname", policy)
    assert outcome.status == "done", outcome.reason


def test_a_file_over_the_limit_is_refused(tree: Path) -> None:
    big = tree / "data" / "big.bin"
    big.write_bytes(b"x" * 2000)
    _refused(_collect(tree, big, _policy(tree, max_collect_bytes=1999)), "over the limit of 1999")
    _refused(_collect(tree, big, max_bytes=1000), "2000 bytes, over the limit of 1000")
    exact = _collect(tree, big, _policy(tree, max_collect_bytes=2000), max_bytes=5000)
    assert exact.status == "done", exact.reason


def test_special_files_are_refused_without_blocking(tree: Path) -> None:
    fifo = tree / "data" / "pipe"
    os.mkfifo(fifo)
    _refused(_collect(tree, fifo), "is a FIFO, not a regular file")
    _refused(_collect(tree, tree / "data"), "is a directory")
    device = tree / "data" / "null"
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    _refused(_collect(tree, device), "is a character device")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "data" / "sock"))
        _refused(_collect(tree, tree / "data" / "sock"), "is a socket")
    _refused(_collect(tree, tree / "data" / "missing"), "cannot resolve")


def test_no_policy_collects_nothing(tree: Path) -> None:
    (tree / "data" / "a").write_text("a")
    params = CollectFileParams(path=str(tree / "data" / "a"))
    outcome = asyncio.run(collect_file(params, context(params, tree / "state")))
    _refused(outcome, "no local collect policy")


def test_the_open_follows_no_symlink_on_the_way(tree: Path) -> None:
    # What guards the window between the check and the open: a directory swapped for
    # a symlink after realpath() makes the open fail instead of reading elsewhere.
    (tree / "secret" / "token").write_text("s3cret")
    (tree / "data" / "swapped").symlink_to(tree / "secret")
    with pytest.raises(CollectRefused, match="cannot open"):
        _open_no_follow(str(tree / "data" / "swapped" / "token"))
    (tree / "data" / "final").symlink_to(tree / "secret" / "token")
    with pytest.raises(CollectRefused, match="cannot open"):
        _open_no_follow(str(tree / "data" / "final"))
    (tree / "data" / "plain").write_text("ok")
    fd = _open_no_follow(str(tree / "data" / "plain"))
    try:
        assert os.read(fd, 10) == b"ok"
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("/etc/shadow", "/etc/shadow*", True),
        ("/etc/shadow-", "/etc/shadow*", True),
        ("/etc/x/shadow", "/etc/shadow*", False),
        ("/etc/ssh/sshd_config", "/etc/**", True),
        ("/etc", "/etc/**", True),
        ("/etcetera/x", "/etc/**", False),
        ("/home/a/.ssh/id_rsa", "**/.ssh/**", True),
        ("/.ssh/x", "**/.ssh/**", True),
        ("/home/a/ssh/x", "**/.ssh/**", False),
        ("/var/log/syslog", "/var/log/*.log", False),
        ("/var/log/kern.log", "/var/log/*.log", True),
        ("/var/log/a/kern.log", "/var/log/*.log", False),
        ("/var/log/a/kern.log", "/var/log/**/*.log", True),
        ("/var/log/kern.log", "/var/log/**/*.log", True),
        ("/tmp/a1", "/tmp/a[0-9]", True),
        ("/tmp/ab", "/tmp/a[!0-9]", True),
        ("/tmp/a1", "/tmp/a[!0-9]", False),
        ("/tmp/a.b", "/tmp/a?b", True),
        ("/tmp/a/b", "/tmp/a?b", False),
    ],
)
def test_glob_match(path: str, pattern: str, expected: bool) -> None:
    assert glob_match(path, pattern) is expected


_segment = st.text(
    alphabet=st.characters(blacklist_characters="/*?[]\x00", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=12,
)


@given(st.lists(_segment, min_size=1, max_size=6), st.lists(_segment, max_size=4))
def test_glob_literals_and_double_star(parts: list[str], below: list[str]) -> None:
    path = "/" + "/".join(parts)
    assert glob_match(path, path)
    assert glob_match(path + "".join("/" + b for b in below), path + "/**")
    assert not glob_match(path + "x", path)
    assert glob_match(path, "**/" + parts[-1])
