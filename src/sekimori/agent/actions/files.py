"""``collect_file``: send one file of the PC to the server, within the local policy.

What may be read is decided here, on the PC, never by the command alone:

- the path is resolved (symlinks, ``..``) and the policy is checked on the *resolved*
  path: a symlink under an allowed directory that points at ``/etc/shadow`` is refused;
- the local policy's globs decide (``LocalActionPolicy.may_collect``: fnmatch, where
  ``*`` also matches ``/``; denied globs win over allowed ones), and a built-in list
  (``DEFAULT_DENIED``: password hashes, SSH and GnuPG directories, private keys,
  ``/proc``, ``/sys``, ``/dev``, ``/run``, the agent's own state directory) always
  applies, whatever the local policy says;
- the file is opened component by component from ``/`` without following any symlink
  (``O_NOFOLLOW`` at each step), so a directory swapped for a symlink between the check
  and the open makes the open fail instead of reading elsewhere; the file opened must
  be the one checked (same device and inode), and not a denied file under another
  name (a hard link or bind mount of ``/etc/shadow``, of the agent's key: by inode);
- only regular files: devices, FIFOs, sockets and directories are refused before they
  are opened (and the open is non-blocking, so a FIFO swapped in cannot hang the agent);
- at most ``min(params.max_bytes, policy.max_collect_bytes)`` bytes.

The bytes are copied into a 0600 file in ``<state_dir>/action-files`` first: the
executor hashes and streams that stable snapshot (a file still being written cannot
change under the digest), then deletes it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import glob
import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sekimori.agent.actions.base import ActionContext, Outcome
from sekimori.agent.actions.local_policy import LocalActionPolicy
from sekimori.protocol.actions import ActionParams, CollectFileParams

__all__ = [
    "DEFAULT_DENIED",
    "WORK_DIR",
    "CollectRefused",
    "collect_file",
    "work_dir",
]

# Never collected, whatever the local policy allows (fnmatch globs: "*" crosses "/").
DEFAULT_DENIED: Final[tuple[str, ...]] = (
    "/etc/shadow*",
    "/etc/gshadow*",
    "/etc/security/opasswd*",
    "/etc/sudoers*",
    "/etc/ssh/ssh_host_*_key",
    "/etc/ssl/private/*",
    "*/.ssh/*",
    "*/.gnupg/*",
    "*/id_rsa",
    "*/id_dsa",
    "*/id_ecdsa",
    "*/id_ecdsa_sk",
    "*/id_ed25519",
    "*/id_ed25519_sk",
    "*.key",
    "/proc/*",
    "/sys/*",
    "/dev/*",
    "/run/*",
    "/var/lib/sekimori-agent/*",
    "/var/lib/sekimori/*",
    "/etc/sekimori/*",
)
# Files behind DEFAULT_DENIED that a hard link or a bind mount could show under another
# name: a collected file must not be one of these inodes.
_DENIED_FILES: Final[tuple[str, ...]] = (
    "/etc/shadow*",
    "/etc/gshadow*",
    "/etc/security/opasswd*",
    "/etc/sudoers*",
    "/etc/ssh/ssh_host_*_key",
    "/etc/ssl/private/*",
    "/root/.ssh/*",
)
# Scratch files of handlers (collected snapshots, scripts, packages), inside the state
# directory; the agent may empty it at start.
WORK_DIR: Final = "action-files"
_READ_CHUNK: Final = 1024 * 1024


class CollectRefused(Exception):
    """The file may not or cannot be collected; the message says why."""


def work_dir(state_dir: Path) -> Path:
    """``<state_dir>/action-files``, created 0700."""
    path = state_dir / WORK_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _first_match(path: str, patterns: Iterable[str]) -> str | None:
    return next((p for p in patterns if fnmatch.fnmatchcase(path, p)), None)


def _check_policy(
    requested: str, resolved: str, policy: LocalActionPolicy, state_dir: Path
) -> None:
    own = glob.escape(str(state_dir.resolve()))
    # The same glob dialect as the local policy (fnmatch: "*" crosses "/").
    denied = (*DEFAULT_DENIED, own, own + "/*", *policy.deny_paths)
    # The path as asked is checked too: a denied name is refused even if it resolves
    # somewhere allowed (the operator asked for something denied).
    for path in (resolved, requested):
        if (pattern := _first_match(path, denied)) is not None:
            raise CollectRefused(f"{path} is denied by the collect policy ({pattern})")
    if not policy.may_collect(resolved):
        raise CollectRefused(f"{resolved} is not in the paths this PC allows collecting")


def _denied_inodes(state_dir: Path) -> set[tuple[int, int]]:
    own = glob.escape(str(state_dir.resolve())) + "/**"
    found: set[tuple[int, int]] = set()
    for pattern in (*_DENIED_FILES, own):
        for path in glob.glob(pattern, recursive=True):
            try:
                info = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.add((info.st_dev, info.st_ino))
    return found


def _open_no_follow(resolved: str) -> int:
    """Open ``resolved`` (absolute, symlink-free) walking from ``/`` with ``O_NOFOLLOW``
    at every component; returns a read-only fd of the final component."""
    parts = [p for p in resolved.split("/") if p]
    if not parts:
        raise CollectRefused("/ is a directory")
    dir_flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", dir_flags)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, dir_flags, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        return os.open(parts[-1], file_flags, dir_fd=fd)
    except OSError as exc:
        raise CollectRefused(f"cannot open {resolved}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


@dataclass(frozen=True)
class _Snapshot:
    path: Path
    size: int
    sha256: str
    source: str


def _snapshot(requested: str, limit: int, policy: LocalActionPolicy, state_dir: Path) -> _Snapshot:
    try:
        resolved = os.path.realpath(requested, strict=True)
    except OSError as exc:
        raise CollectRefused(f"cannot resolve {requested}: {exc.strerror}") from None
    _check_policy(os.path.normpath(requested), resolved, policy, state_dir)
    try:
        before = os.lstat(resolved)
    except OSError as exc:
        raise CollectRefused(f"cannot read {resolved}: {exc.strerror}") from None
    # Refused before opening: opening some devices has effects (a tape rewinds).
    if not stat.S_ISREG(before.st_mode):
        raise CollectRefused(f"{resolved} is {_kind(before.st_mode)}, not a regular file")
    fd = _open_no_follow(resolved)
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
            raise CollectRefused(f"{resolved} changed while it was being opened")
        if (info.st_dev, info.st_ino) in _denied_inodes(state_dir):
            raise CollectRefused(
                f"{resolved} is a denied file under another name (hard link or bind mount)"
            )
        if not stat.S_ISREG(info.st_mode):
            raise CollectRefused(f"{resolved} is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise CollectRefused(
                f"{resolved} is {info.st_size} bytes, over the limit of {limit} bytes"
            )
        os.set_blocking(fd, True)
        out_fd, out_name = tempfile.mkstemp(prefix="collect-", dir=work_dir(state_dir))
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(out_fd, "wb") as out:
                # A file that grows while it is read is cut at limit + 1 and refused.
                while chunk := os.read(fd, min(_READ_CHUNK, limit + 1 - size)):
                    size += len(chunk)
                    if size > limit:
                        raise CollectRefused(
                            f"{resolved} grew over the limit of {limit} bytes while read"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            os.unlink(out_name)
            raise
    finally:
        os.close(fd)
    return _Snapshot(Path(out_name), size, digest.hexdigest(), resolved)


async def collect_file(params: ActionParams, ctx: ActionContext) -> Outcome:
    """Copy the file into a snapshot the executor sends (``Outcome.data_path``)."""
    if not isinstance(params, CollectFileParams):
        raise TypeError(f"collect_file got {type(params).__name__}")
    if not sys.platform.startswith("linux"):
        return Outcome(status="failed", reason="not supported on this platform")
    policy = ctx.policy
    if not isinstance(policy, LocalActionPolicy):
        return Outcome(status="failed", reason="this PC has no local collect policy")
    limit = min(params.max_bytes, policy.max_collect_bytes)
    try:
        snap = await asyncio.to_thread(_snapshot, params.path, limit, policy, ctx.state_dir)
    except CollectRefused as exc:
        return Outcome(status="failed", reason=str(exc))
    return Outcome(
        status="done",
        output=f"{snap.source}: {snap.size} bytes, sha256 {snap.sha256}",
        data_path=snap.path,
    )
