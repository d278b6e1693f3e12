"""``<state_dir>/actions.log``: the PC's own record of every action it was asked to run.

Append-only JSON lines, one per step (``received``, ``refused``, ``done``,
``failed``; ``control``: remote control granted, ended, input dropped — written by
``sekimori.agent.live``), each carrying ``prev``: the SHA-256 of the line before it
(64 zeros for the first). Changing, removing or inserting a line breaks the chain at the next line;
``actions.log.head`` holds the hash of the last line, so a changed or removed last line
is noticed too. Each append is fsynced before the action goes on.

The chain shows tampering by anyone who does not rewrite the whole file; root on the
PC can rewrite it all (the server's own audit trail of the same commands is the
cross-check). ``sekimori agent actions-log --verify`` checks it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from sekimori.clock import now_us

__all__ = ["LOG_FILE", "ActionLog", "ChainCheck", "read_entries", "verify_log"]

LOG_FILE: Final = "actions.log"
_HEAD_SUFFIX: Final = ".head"
_GENESIS: Final = "0" * 64
_TAIL_BYTES = 256 * 1024

Step = Literal["received", "refused", "done", "failed", "control"]


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _last_line(path: Path) -> bytes | None:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            tail = fh.read()
    except FileNotFoundError:
        return None
    lines = tail.rstrip(b"\n").split(b"\n")
    return lines[-1] if lines and lines[-1] else None


class ActionLog:
    """Appends chained lines; safe across threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._head_path = path.with_name(path.name + _HEAD_SUFFIX)
        self._lock = threading.Lock()
        last = _last_line(path)
        self._prev = _GENESIS if last is None else _line_hash(last)

    def append(
        self,
        step: Step,
        *,
        nonce: str,
        action: str,
        signers: Iterable[str] = (),
        requested_by: str = "",
        reason: str = "",
        device_count: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "time_us": now_us(),
            "step": step,
            "nonce": nonce,
            "action": action,
            "signers": sorted(signers),
            "requested_by": requested_by,
            "reason": reason[:2000],
            "device_count": device_count,
        }
        if extra:
            entry.update(extra)
        with self._lock:
            entry["prev"] = self._prev
            line = json.dumps(entry, ensure_ascii=False, sort_keys=True).encode()
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._prev = _line_hash(line)
            head = os.open(self._head_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(head, self._prev.encode() + b"\n")
            finally:
                os.close(head)


def read_entries(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw line without its newline)."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            yield number, raw.rstrip(b"\n")


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    lines: int
    # 1-based number of the first line that is wrong (changed, or after a removed or
    # inserted line), 0 when ok.
    bad_line: int = 0
    error: str = ""


def verify_log(path: Path) -> ChainCheck:
    """Check every line's ``prev`` and the head file."""
    if not path.exists():
        return ChainCheck(True, 0)
    prev = _GENESIS
    previous_raw = b""
    count = 0
    for number, raw in read_entries(path):
        count = number
        try:
            entry = json.loads(raw)
        except ValueError:
            return ChainCheck(False, count, number, f"line {number} is not JSON")
        if not isinstance(entry, dict) or entry.get("prev") != prev:
            # The link is stored in this line but protects the one before: a changed
            # line N makes line N+1's prev wrong. Name the line that was changed.
            bad = number - 1 if number > 1 and previous_raw else number
            return ChainCheck(
                False,
                count,
                bad,
                f"line {bad} was changed or a line was removed or inserted there "
                f"(line {number} does not chain)",
            )
        prev = _line_hash(raw)
        previous_raw = raw
    head_path = path.with_name(path.name + _HEAD_SUFFIX)
    try:
        head = head_path.read_text().strip()
    except FileNotFoundError:
        head = ""
    if count and head != prev:
        return ChainCheck(
            False,
            count,
            count,
            f"line {count} (the last) was changed, or lines were removed at the end "
            f"({head_path.name} does not match)",
        )
    return ChainCheck(True, count)
