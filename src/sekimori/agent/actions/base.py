"""What an action handler is: one async function per action name.

The executor has already verified the command (signatures, device, expiry, nonce,
local policy, attachment digest) before a handler runs: handlers only act and report.
A handler must finish within its own limits (timeouts, size caps) and must not raise
for an expected failure: it returns ``Outcome(status="failed", ...)`` with a reason.
An unexpected exception is reported as ``failed`` by the executor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sekimori.protocol.actions import MAX_OUTPUT_CHARS, ActionParams, CommandBody

__all__ = ["ActionContext", "Handler", "Outcome", "cap_output"]


@dataclass(frozen=True)
class Outcome:
    status: Literal["done", "failed"]
    reason: str = ""
    exit_code: int | None = None
    output: str = ""
    # A file to send back (collect_file): the executor streams it in ``action_data``
    # chunks with its size and SHA-256 (computed while sending), then deletes it.
    data_path: Path | None = None


@dataclass
class ActionContext:
    """What a handler may use besides its parameters."""

    body: CommandBody
    signers: frozenset[str]
    state_dir: Path
    # Script or package bytes the command names by SHA-256 (already checked).
    attachment: bytes = b""
    # Local action policy (``executor.LocalActionPolicy``), for handlers with path or
    # size rules (collect_file).
    policy: object = None
    # Hooks into the running agent (refresh inventory, screenshot now, live control):
    # name -> callable, filled by the runtime.
    hooks: dict[str, Callable[..., object]] = field(default_factory=dict)
    # The program restart/shutdown run (``shutdown -r +N msg``); agent setting
    # ``actions_shutdown_command`` (tests point it at a recording script).
    shutdown_command: tuple[str, ...] = ("shutdown",)


Handler = Callable[[ActionParams, ActionContext], Awaitable[Outcome]]


def cap_output(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Keep the end of long output (where errors are) within the wire limit."""
    if len(text) <= limit:
        return text
    marker = "…[truncated]…\n"
    return marker + text[-(limit - len(marker)) :]
