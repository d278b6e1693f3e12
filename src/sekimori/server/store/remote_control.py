"""May this console user control this PC now? The console's question before it
forwards keyboard and mouse events of a live view (``console/routes/live.py``).

Yes only when a ``remote_control`` command requested by that user, for that device,
was signed (it became ``ready``: enough operator signatures, checked by the server
when stored and again by the agent), and the agent answered ``done`` (the person
allowed it) less than the command's ``max_seconds`` ago. The agent is the authority
— it injects nothing without its own grant — so this check only keeps the server
from relaying input nobody authorised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.protocol.actions import RemoteControlParams, decode_command_body
from sekimori.server.store.schema import action_targets, actions

__all__ = ["ControlGrant", "control_grant"]

# The longest grant a command can ask for (RemoteControlParams.max_seconds).
_LONGEST_US = 14400 * 1_000_000


@dataclass(frozen=True, slots=True)
class ControlGrant:
    nonce: str
    granted_at_us: int
    until_us: int
    signers: tuple[str, ...]


def control_grant(engine: sa.Engine, device_id: str, user: str, now_us: int) -> ControlGrant | None:
    """The newest grant of remote control over ``device_id`` to ``user`` still running
    at ``now_us``, or None."""
    query = (
        sa.select(
            actions.c.nonce,
            actions.c.body,
            actions.c.signers,
            action_targets.c.finished_at_us,
        )
        .join(action_targets, action_targets.c.nonce == actions.c.nonce)
        .where(
            actions.c.action == "remote_control",
            actions.c.requested_by == user,
            actions.c.ready_at_us.is_not(None),
            actions.c.state.in_(("ready", "expired")),
            action_targets.c.device_id == device_id,
            action_targets.c.state == "done",
            action_targets.c.finished_at_us > now_us - _LONGEST_US,
        )
        .order_by(action_targets.c.finished_at_us.desc())
        .limit(8)
    )
    with engine.connect() as conn:
        rows = list(conn.execute(query))
    for row in rows:
        signers = tuple(str(s) for s in json.loads(row.signers))
        if not signers:
            continue
        try:
            body = decode_command_body(bytes(row.body))
        except ValueError:
            continue
        params = body.params
        if not isinstance(params, RemoteControlParams) or body.requested_by != user:
            continue
        until = int(row.finished_at_us) + params.max_seconds * 1_000_000
        if until > now_us:
            return ControlGrant(
                nonce=str(row.nonce),
                granted_at_us=int(row.finished_at_us),
                until_us=until,
                signers=signers,
            )
    return None
