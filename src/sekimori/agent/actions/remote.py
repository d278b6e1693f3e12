"""The ``remote_control`` action: keyboard and mouse over the live view, with the
person's consent and a visible indicator.

The executor has verified the command (operator signature — remote control is never
low risk —, this device, expiry, nonce, and the local action policy, which has
remote control off unless it was enabled at enrollment) before this runs. Here:

1. live view must be allowed by the policy in force (control rides on it), then
   the person at the PC is asked, in the live view's consent dialog in its
   "control" form (``indicator.CONTROL_CONSENT_TITLE``): Escape, "Deny", closing it
   or no answer within the live-view policy's consent timeout → ``failed``
   ("declined");
2. allowed: the agent's live view (``ctx.hooks["live"]()``, a ``LiveView``) grants
   control to the console user who requested the command (``body.requested_by``),
   bound to the command's nonce, for ``params.max_seconds``; the orange "being
   controlled" bar appears under the red live-view bar;
3. ``done`` with "control granted until <UTC time>".

Input then arrives as ``live_input`` within that user's live-view session and is
injected only while the grant lasts. It ends after ``max_seconds``, when the live
session ends, or when the person clicks the orange bar or presses Pause
(``sekimori.agent.live``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sekimori.agent.actions.base import ActionContext, Outcome
from sekimori.agent.platform.linux.display import NoDisplay, RemoteDisplay, WaylandSession
from sekimori.protocol.actions import ActionParams, RemoteControlParams

__all__ = ["HOOK", "remote_control"]

log = logging.getLogger(__name__)

# The hook the runtime fills with a callable returning its ``LiveView``.
HOOK = "live"


async def remote_control(params: ActionParams, ctx: ActionContext) -> Outcome:
    from sekimori.agent.indicator import ask_consent  # noqa: PLC0415 - needs X
    from sekimori.agent.live import ControlBusy, LiveView  # noqa: PLC0415
    from sekimori.agent.xinput import NoXTest  # noqa: PLC0415

    if not isinstance(params, RemoteControlParams):
        return Outcome("failed", f"remote_control cannot run {type(params).__name__}")
    hook = ctx.hooks.get(HOOK)
    live = hook() if hook is not None else None
    if not isinstance(live, LiveView):
        return Outcome("failed", "live view is not available on this agent")
    user = ctx.body.requested_by
    if not live.view_allowed:
        return Outcome("failed", "live view is not allowed by this PC's policy")
    if live.controller is not None:
        return Outcome("failed", f"remote control is already granted to {live.controller}")
    try:
        display, xauthority = live.screen()
    except (NoDisplay, WaylandSession, RemoteDisplay, OSError) as exc:
        return Outcome("failed", f"no screen to control: {exc}")
    log.info("remote control for %s: asking the user for consent", user)
    allowed = await asyncio.to_thread(
        ask_consent, display, xauthority, user, live.consent_seconds, None, purpose="control"
    )
    if not allowed:
        return Outcome("failed", "declined")
    try:
        until_us = await live.grant_control(ctx.body.nonce, user, float(params.max_seconds))
    except (ControlBusy, NoXTest, NoDisplay, WaylandSession, RemoteDisplay, OSError) as exc:
        return Outcome("failed", str(exc))
    until = dt.datetime.fromtimestamp(until_us / 1_000_000, dt.UTC)
    text = f"control granted until {until:%Y-%m-%d %H:%M:%S} UTC"
    return Outcome("done", text, output=f"{text} to {user}")
