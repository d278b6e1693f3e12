"""The PC's own action policy: ``<state_dir>/actions-policy.json`` (0600).

Written at enrollment from ``sekimori agent enroll --allow-actions … --remote-control
--collect-paths … --deny-paths … --max-collect-bytes N`` and changed only by editing
it on the PC: nothing the server sends touches it. A PC enrolled before this file
existed runs on the defaults (every action but remote control; unsigned low-risk
actions allowed; no file may be collected until ``collect_paths`` names some).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Final

import msgspec

from sekimori.agent.identity import write_private
from sekimori.protocol.actions import ACTION_NAMES, ActionName

__all__ = [
    "DEFAULT_ALLOWED",
    "POLICY_FILE",
    "LocalActionPolicy",
    "LocalPolicyError",
    "decode_local_policy",
    "load_local_policy",
    "parse_actions",
    "policy_from_flags",
    "write_local_policy",
]

POLICY_FILE: Final = "actions-policy.json"
DEFAULT_ALLOWED: Final[tuple[ActionName, ...]] = tuple(
    a for a in ACTION_NAMES if a != "remote_control"
)
_MAX_FILE_BYTES = 256 * 1024

# Absolute, or starting with "*" (which matches any directory: "*.key").
_Glob = Annotated[str, msgspec.Meta(min_length=2, max_length=4096, pattern=r"^[/*]")]


class LocalPolicyError(Exception):
    """The local policy file (or a flag meant for it) is invalid; nothing is written."""


class LocalActionPolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Actions this PC runs at all (signed or not).
    allowed_actions: Annotated[list[ActionName], msgspec.Meta(max_length=32)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_ALLOWED)
    )
    # message / screenshot / refresh_inventory without any operator signature.
    allow_unsigned_low_risk: bool = True
    # collect_file: a path must match one of these globs and none of the denied ones
    # (fnmatch on the resolved path: "*" also matches "/").
    collect_paths: Annotated[list[_Glob], msgspec.Meta(max_length=256)] = msgspec.field(
        default_factory=list
    )
    deny_paths: Annotated[list[_Glob], msgspec.Meta(max_length=256)] = msgspec.field(
        default_factory=list
    )
    max_collect_bytes: Annotated[int, msgspec.Meta(ge=1, le=1024 * 1024 * 1024)] = 16 * 1024 * 1024

    def allows(self, action: str) -> bool:
        return action in self.allowed_actions

    def may_collect(self, path: str) -> bool:
        """``path`` should be resolved (no ``..``, no symlink) by the caller."""
        if any(fnmatch.fnmatchcase(path, g) for g in self.deny_paths):
            return False
        return any(fnmatch.fnmatchcase(path, g) for g in self.collect_paths)


_decoder = msgspec.json.Decoder(LocalActionPolicy)


def decode_local_policy(data: bytes) -> LocalActionPolicy:
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise LocalPolicyError(f"invalid local action policy: {exc}") from None


def load_local_policy(state_dir: Path) -> LocalActionPolicy:
    """The policy in force; the defaults when the file does not exist. Raises
    ``LocalPolicyError`` for a file that exists but is not valid (the executor then
    refuses every action rather than guess)."""
    path = state_dir / POLICY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return LocalActionPolicy()
    except OSError as exc:
        raise LocalPolicyError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise LocalPolicyError(f"{path} is too large")
    return decode_local_policy(data)


def write_local_policy(state_dir: Path, policy: LocalActionPolicy) -> Path:
    path = state_dir / POLICY_FILE
    write_private(path, msgspec.json.format(msgspec.json.encode(policy), indent=2) + b"\n")
    return path


def parse_actions(text: str) -> list[ActionName]:
    """``"message,lock, kill_process"`` -> the names, each checked."""
    names: list[ActionName] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        if name not in ACTION_NAMES:
            raise LocalPolicyError(f"unknown action {name!r} (known: {', '.join(ACTION_NAMES)})")
        if name not in names:
            names.append(name)
    return names


def policy_from_flags(
    *,
    allow_actions: str | None,
    remote_control: bool,
    collect_paths: Iterable[str],
    deny_paths: Iterable[str],
    max_collect_bytes: int | None,
    allow_unsigned_low_risk: bool = True,
) -> LocalActionPolicy:
    """The enrollment flags as a validated policy (``LocalPolicyError`` if any is bad)."""
    allowed = list(DEFAULT_ALLOWED) if allow_actions is None else parse_actions(allow_actions)
    if remote_control and "remote_control" not in allowed:
        allowed.append("remote_control")
    raw = {
        "allowed_actions": allowed,
        "allow_unsigned_low_risk": allow_unsigned_low_risk,
        "collect_paths": list(collect_paths),
        "deny_paths": list(deny_paths),
    }
    if max_collect_bytes is not None:
        raw["max_collect_bytes"] = max_collect_bytes
    try:
        return msgspec.convert(raw, LocalActionPolicy)
    except msgspec.ValidationError as exc:
        raise LocalPolicyError(f"invalid local action policy: {exc}") from None
