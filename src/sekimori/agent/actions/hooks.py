"""``screenshot`` and ``refresh_inventory``: actions served by the running agent.

Both go through hooks the runtime fills in (``ActionContext.hooks``):

* ``refresh_inventory``: ``hooks["refresh_inventory"]() -> bool`` restarts the
  inventory collector, whose first round sends the hardware and the full software
  list. False (collector off by policy or settings): the action fails with that
  reason — the server cannot turn a collector on through an action.
* ``screenshot``: ``hooks["screenshot"](monitor) -> int`` (frames sent). Chosen
  behaviour: a **one-off grab** (``grab_frames``, the screens code used by the
  collector and live view), sent as ``screen.frame`` events with trigger ``action``
  through the outbox, **whether or not the screens collector runs**: it is an
  explicit, logged request for one picture, not capture. What keeps it in check is
  the PC's local action policy (``screenshot`` can be left out of
  ``--allow-actions``, or unsigned low-risk actions refused), not the collection
  policy. The screens collector's ``scale``/``format``/``quality`` settings are used
  when the agent has them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from typing import Literal

from sekimori.agent.actions.base import ActionContext, Outcome
from sekimori.agent.platform.linux.display import find_display
from sekimori.agent.screens import ScreenGrabber, encode
from sekimori.protocol.actions import ActionParams, RefreshInventoryParams, ScreenshotParams
from sekimori.protocol.events.screen import MAX_FRAME_BYTES, ScreenFrame

__all__ = ["GrabSettings", "grab_frames", "refresh_inventory", "screenshot"]


@dataclass(frozen=True)
class GrabSettings:
    display: str = ""
    xauthority: str = ""
    scale: float = 0.5
    format: Literal["jpeg", "webp"] = "jpeg"
    quality: int = 70


def grab_frames(settings: GrabSettings, monitor: int) -> list[ScreenFrame]:
    """Grab ``monitor`` (1 = the first; 0 = every monitor) once. Blocking; raises
    ``CaptureError`` or a display error when there is no screen to grab."""
    target = find_display(display=settings.display, xauthority=settings.xauthority, env=os.environ)
    frames: list[ScreenFrame] = []
    with ScreenGrabber(target.display, target.xauthority) as grabber:
        monitors = grabber.monitors()
        if monitor:
            monitors = [m for m in monitors if m.index == monitor - 1]
        for mon in monitors:
            raw = grabber.grab(mon)
            scale, quality = settings.scale, settings.quality
            while True:
                encoded = encode(raw, scale=scale, format=settings.format, quality=quality)
                if len(encoded.data) <= MAX_FRAME_BYTES:
                    break
                quality, scale = (quality // 2, scale) if quality > 20 else (quality, scale / 2)
            frames.append(
                ScreenFrame(
                    monitor=mon.index,
                    width=encoded.width,
                    height=encoded.height,
                    screen_width=mon.width,
                    screen_height=mon.height,
                    format=encoded.format,
                    image=encoded.data,
                    sha256=hashlib.sha256(encoded.data).hexdigest(),
                    trigger="action",
                )
            )
    return frames


async def screenshot(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, ScreenshotParams):
        raise TypeError(f"screenshot got {type(params).__name__}")
    hook = ctx.hooks.get("screenshot")
    if hook is None:
        return Outcome(status="failed", reason="screenshots are not available on this agent")
    try:
        count = await asyncio.to_thread(hook, params.monitor)
    except Exception as exc:  # noqa: BLE001  # no display, capture error, X error
        return Outcome(status="failed", reason=f"no screenshot: {exc}")
    if not isinstance(count, int) or count == 0:
        return Outcome(status="failed", reason=f"no monitor {params.monitor} to capture")
    return Outcome(status="done", output=f"{count} screen.frame event(s) sent (trigger action)")


async def refresh_inventory(params: ActionParams, ctx: ActionContext) -> Outcome:
    if not isinstance(params, RefreshInventoryParams):
        raise TypeError(f"refresh_inventory got {type(params).__name__}")
    hook = ctx.hooks.get("refresh_inventory")
    if hook is None:
        return Outcome(status="failed", reason="inventory is not available on this agent")
    refreshed = await asyncio.to_thread(hook)
    if not refreshed:
        return Outcome(status="failed", reason="the inventory collector is off on this PC")
    return Outcome(status="done", output="inventory collector restarted: a full inventory follows")
