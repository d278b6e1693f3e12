"""An ``ActionContext`` for calling one handler directly (the executor's checks are
tested with the executor)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sekimori.agent.actions.base import ActionContext
from sekimori.protocol.actions import ActionParams, decode_command_body
from tests.operators import command


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
