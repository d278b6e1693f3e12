"""The agent process: open the outbox, run the channel, stop cleanly on a signal.

At start the collectors run under the policy kept from the last run (if any, see
``sekimori.agent.policy``), so a PC that starts without reaching the server still
collects as its group's policy says; the server's policy replaces it once connected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sekimori import __version__
from sekimori.agent.actions.executor import Executor
from sekimori.agent.channel import ChannelClient, ChannelEnd
from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.agent.collectors.supervisor import CollectorConfigError, Supervisor, is_enabled
from sekimori.agent.host import host_info
from sekimori.agent.identity import Identity
from sekimori.agent.live import LiveView, control_journal, display_settings
from sekimori.agent.outbox import Outbox
from sekimori.agent.platform.linux.memory import limit_malloc_arenas
from sekimori.agent.policy import NOTICE_FILE, PolicyManager, effective_settings
from sekimori.protocol.events import AgentStarted, AgentStopped
from sekimori.protocol.policy import Policy
from sekimori.settings import AgentSettings

__all__ = ["EXIT_REFUSED", "run_agent"]

log = logging.getLogger(__name__)

EXIT_REFUSED = 3


def collector_settings(
    settings: AgentSettings, policy: Policy | None = None
) -> dict[str, dict[str, Any]]:
    """The collectors' settings (``policy`` merged over the local ones), with what the
    agent itself knows filled in: the file collector must never watch the agent's own
    state (its outbox writes would report themselves in a loop). A disabled file
    collector gets nothing: settings beyond ``enabled`` would make the supervisor
    import it to check them."""
    out = effective_settings(settings.collectors, policy)
    files = out.setdefault("files", {})
    if is_enabled("files", files):
        files.setdefault("state_dir", str(Path(settings.state_dir).resolve()))
    return out


def _action_hooks(
    settings: AgentSettings,
    supervisor: Supervisor,
    outbox: Outbox,
    live: LiveView,
    policy: Callable[[], Policy | None],
) -> dict[str, Callable[..., object]]:
    """What action handlers may use of the running agent (``ActionContext.hooks``).
    X and Pillow are imported only when an action needs them."""

    def displays() -> object:
        from sekimori.agent.actions.desktop import known_displays  # noqa: PLC0415

        return known_displays(*display_settings(settings.collectors))

    def screenshot(monitor: int) -> int:
        from sekimori.agent.actions.hooks import GrabSettings, grab_frames  # noqa: PLC0415

        screens = collector_settings(settings, policy()).get("screens", {})
        grab = GrabSettings(
            display=str(screens.get("display") or ""),
            xauthority=str(screens.get("xauthority") or ""),
            scale=float(screens.get("scale", 0.5)),
            format="webp" if screens.get("format") == "webp" else "jpeg",
            quality=int(screens.get("quality", 70)),
        )
        frames = grab_frames(grab, monitor)
        for frame in frames:
            outbox.append("screen.frame", frame)
        return len(frames)

    return {
        "displays": displays,
        "screenshot": screenshot,
        "refresh_inventory": lambda: supervisor.restart("inventory"),
        "live": lambda: live,
    }


def _screen_burst(supervisor: Supervisor) -> bool:
    """A rule fired on the server: ask the screens collector, if it runs, for a burst.
    (Duck-typed so the screens code is imported only when the policy enables it.)"""
    request = getattr(supervisor.running("screens"), "request_burst", None)
    if request is None:
        return False
    request()
    return True


async def _main(settings: AgentSettings, identity: Identity, outbox: Outbox) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = host_info()
    state_dir = Path(settings.state_dir)
    notice_paths = [state_dir / NOTICE_FILE]
    if settings.notice_path:
        notice_paths.append(Path(settings.notice_path))
    policies = PolicyManager(
        state_dir,
        outbox,
        lambda policy: collector_settings(settings, policy),
        notice_paths=notice_paths,
    )
    # Settings are checked first: an agent that refuses to start records nothing.
    try:
        supervisor = Supervisor(outbox, COLLECTORS, policies.initial_settings(), gate=policies.gate)
    except CollectorConfigError as exc:
        if policies.active is None:
            raise
        # The kept policy no longer fits these collectors (say, after an update):
        # run on the local settings until the server sends the group's policy.
        policies.forget(str(exc))
        supervisor = Supervisor(outbox, COLLECTORS, policies.initial_settings(), gate=policies.gate)
    outbox.append(
        "agent.started", AgentStarted(version=__version__, pid=os.getpid(), hostname=host.hostname)
    )
    # Live view answers to the policy in force (off unless the group's policy allows it).
    # A recorded session's pictures go through the outbox like every screen frame.
    live = LiveView(
        lambda: (policies.active or Policy()).live_view,
        *display_settings(settings.collectors),
        record=lambda frame, time_us: outbox.append("screen.frame", frame, time_us=time_us),
    )
    # Signed remote actions: checked against the operator keyring pinned on this PC
    # and its own action policy (docs/actions.md); never against the server's word.
    actions = Executor(
        state_dir,
        identity.device_id,
        record_event=outbox.append,
        hooks=_action_hooks(settings, supervisor, outbox, live, lambda: policies.active),
        shutdown_command=tuple(settings.actions_shutdown_command),
    )
    # Remote control's grants, ends and dropped input go to the PC's own action log.
    live.journal = control_journal(actions.log)
    client = ChannelClient(
        identity,
        outbox,
        settings,
        host,
        on_policy=policies.handle,
        live=live,
        on_screen_burst=lambda: _screen_burst(supervisor),
        actions=actions,
    )
    supervisor.start()
    policies.start(supervisor)
    log.info("collectors running: %s", ", ".join(supervisor.enabled) or "none")
    try:
        end = await client.run(stop)
    finally:
        for task in list(client.action_tasks):
            task.cancel()
        await asyncio.gather(*client.action_tasks, return_exceptions=True)
        actions.close()
        await asyncio.to_thread(supervisor.stop)
    if end is ChannelEnd.REFUSED:
        return EXIT_REFUSED
    outbox.append("agent.stopped", AgentStopped(reason="signal"))
    return 0


def run_agent(settings: AgentSettings) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code. Raises NotEnrolled."""
    # Before any thread starts: see platform.linux.memory.
    limit_malloc_arenas(2)
    state_dir = Path(settings.state_dir)
    identity = Identity.load(state_dir)
    outbox = Outbox(state_dir / "outbox.db", max_bytes=settings.outbox_max_bytes)
    log.info("agent %s for device %s starting", __version__, identity.device_id)
    try:
        return asyncio.run(_main(settings, identity, outbox))
    finally:
        outbox.close()
