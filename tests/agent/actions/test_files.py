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

from sekimori.agent.actions.base import Outcome
from sekimori.agent.actions.files import (
    WORK_DIR,
    CollectRefused,
    _check_policy,
    _open_no_follow,
    collect_file,
)
from sekimori.agent.actions.local_policy import LocalActionPolicy
from sekimori.protocol.actions import CollectFileParams
from tests.agent.actions.handler_context import context


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret").mkdir()
    return tmp_path


def _policy(tree: Path, **kw: object) -> LocalActionPolicy:
    values: dict[str, object] = {
        "collect_paths": [f"{tree}/data/*"],
        "deny_paths": [f"{tree}/secret/*"],
    }
    values.update(kw)
    return LocalActionPolicy(**values)  # type: ignore[arg-type]


def _collect(
    tree: Path, path: Path | str, policy: LocalActionPolicy | None = None, **kw: int
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


def test_a_hard_link_to_a_denied_file_is_refused(tree: Path) -> None:
    # /etc/shadow may sit on another file system than the test's directory: the
    # agent's own state files are denied the same way and share it.
    state = tree / "state"
    state.mkdir(mode=0o700)
    (state / "identity.json").write_text('{"key": "private"}')
    os.link(state / "identity.json", tree / "data" / "innocent.txt")
    _refused(_collect(tree, tree / "data" / "innocent.txt"), "is a denied file under another name")


def test_a_symlink_inside_the_allowed_tree_is_followed(tree: Path) -> None:
    (tree / "data" / "real.txt").write_text("fine")
    (tree / "data" / "alias.txt").symlink_to(tree / "data" / "real.txt")
    outcome = _collect(tree, tree / "data" / "alias.txt")
    assert outcome.status == "done", outcome.reason
    assert outcome.data_path is not None
    assert outcome.data_path.read_bytes() == b"fine"


def test_default_denied_paths_win_over_the_allowed_globs(tree: Path) -> None:
    policy = _policy(tree, collect_paths=["/etc/*", f"{tree}/*"], deny_paths=[])
    _refused(_collect(tree, "/etc/shadow", policy), "/etc/shadow is denied")
    _refused(_collect(tree, "/etc/gshadow", policy), "is denied")
    ssh = tree / "data" / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text("ssh-ed25519 AAAA")
    (tree / "data" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    (tree / "data" / "server.key").write_text("-----BEGIN PRIVATE KEY-----")
    _refused(_collect(tree, ssh / "authorized_keys", policy), "*/.ssh/*")
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
    (tree / "data" / "dir").mkdir()
    _refused(_collect(tree, tree / "data" / "dir"), "is a directory")
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
    "path",
    [
        "/etc/shadow",
        "/etc/shadow-",
        "/etc/gshadow",
        "/etc/sudoers.d/admins",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssl/private/site.pem",
        "/root/.ssh/id_ed25519",
        "/home/a/.ssh/authorized_keys",
        "/home/a/.gnupg/private-keys-v1.d/x.key",
        "/srv/deploy/id_rsa",
        "/opt/app/tls/server.key",
        "/proc/1/environ",
        "/sys/firmware/efi/efivars/x",
        "/dev/sda",
        "/run/secrets/token",
        "/var/lib/sekimori-agent/identity.json",
    ],
)
def test_default_denied_paths(tmp_path: Path, path: str) -> None:
    # The check itself (most of these files do not exist here): denied even though
    # the local policy allows every path.
    with pytest.raises(CollectRefused, match="is denied by the collect policy"):
        _check_policy(path, path, LocalActionPolicy(collect_paths=["/*"]), tmp_path / "state")
    _check_policy(
        "/etc/hostname", "/etc/hostname", LocalActionPolicy(collect_paths=["/*"]), tmp_path
    )


def test_a_state_dir_with_glob_characters_is_still_denied(tmp_path: Path) -> None:
    state = tmp_path / "st[a]te"
    with pytest.raises(CollectRefused, match="is denied"):
        _check_policy(f"{state}/x", f"{state}/x", LocalActionPolicy(collect_paths=["/*"]), state)
