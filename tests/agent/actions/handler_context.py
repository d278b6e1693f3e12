"""An ``ActionContext`` for calling one handler directly (the executor's checks are
tested with the executor), and a local collect policy of plain values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sekimori.agent.actions.base import ActionContext
from sekimori.protocol.actions import ActionParams, decode_command_body
from tests.operators import command


@dataclass
class CollectPolicyValues:
    collect_paths: list[str] = field(default_factory=list)
    deny_paths: list[str] = field(default_factory=list)
    max_collect_bytes: int = 16 * 1024 * 1024


def context(
    params: ActionParams,
    state_dir: Path,
    *,
    attachment: bytes = b"",
    policy: object = None,
    devices: Sequence[str] = ("device-1",),
) -> ActionContext:
    state_dir.mkdir(mode=0o700, exist_ok=True)
    body = decode_command_body(command(params, devices).body)
    return ActionContext(
        body=body,
        signers=frozenset({"alice"}),
        state_dir=state_dir,
        attachment=attachment,
        policy=policy,
    )
