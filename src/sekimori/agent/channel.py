"""The agent's side of the channel: dial out, authenticate, stream the outbox.

Session lifecycle (one TLS WebSocket at a time)::

    CONNECTING -> HELLO sent -> WELCOME received (outbox trimmed to acked_seq)
               -> STREAMING (sender, receiver, heartbeat) -> closed -> backoff -> CONNECTING

Batches are pipelined: up to ``inflight_batches`` are sent before the first ack.
Events leave the outbox only on ack, which the server sends after commit.

With an ``on_policy`` handler the agent lists the ``policy`` capability in ``hello``;
policy updates are then applied one at a time, in order, by a task of their own (so
restarting collectors never holds up acks), each answered with ``policy_applied``.

With a ``live`` handler (``sekimori.agent.live.LiveView``) it lists the ``live``
capability: ``live_start``/``live_stop`` go to the handler, whose frames and states
are sent straight on the connection (never through the outbox); a session still
running when the connection drops is ended at once. It lists ``remote_control`` too:
``live_input`` goes to the handler, which injects it only while a signed
``remote_control`` grant is active for that session (``sekimori.agent.live``).

With an ``actions`` executor (``sekimori.agent.actions.executor``) it lists the
``actions`` capability: ``operators`` is applied at once and answered with
``operators_applied``; each ``action`` runs in a task of its own (several at a time;
the executor serializes what must not overlap) that outlives the connection — its
data and result go on the connection the request came on, and a result that cannot
be sent there is kept in ``actions.db`` and sent after the next ``welcome``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, WebSocketException

from sekimori import __version__
from sekimori.agent.backoff import Backoff
from sekimori.agent.host import HostInfo
from sekimori.agent.identity import Identity, client_ssl_context
from sekimori.agent.outbox import Outbox
from sekimori.protocol import (
    CAPABILITY_LIVE,
    CAPABILITY_POLICY,
    CAPABILITY_SCREEN_BURST,
    Ack,
    Command,
    CommandResult,
    ErrorMessage,
    EventBatch,
    Heartbeat,
    Hello,
    LiveStart,
    LiveStop,
    PolicyApplied,
    PolicyUpdate,
    ProtocolError,
    ScreenBurst,
    Welcome,
    decode_server_message,
    encode_batch_body,
    encode_message,
)
from sekimori.protocol.messages import (
    CAPABILITY_ACTIONS,
    CAPABILITY_REMOTE_CONTROL,
    ActionRequest,
    LiveInput,
    Message,
    OperatorsUpdate,
)
from sekimori.settings import AgentSettings

if TYPE_CHECKING:
    from sekimori.agent.actions.executor import Executor
    from sekimori.agent.live import LiveView

__all__ = ["ChannelClient", "ChannelEnd", "FatalRefusal"]

log = logging.getLogger(__name__)

# Refusals after which reconnecting cannot help: the identity itself is rejected.
_FATAL_CODES = frozenset({"revoked", "unknown_device"})
_MAX_SERVER_FRAME = 4 * 1024 * 1024

PolicyHandler = Callable[[PolicyUpdate], Awaitable[PolicyApplied]]


class ChannelEnd(enum.Enum):
    STOPPED = "stopped"  # asked to stop
    REFUSED = "refused"  # the server rejected this device for good


class FatalRefusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class _SessionError(Exception):
    """The session ended in a way worth a warning; reconnect after backoff."""


class ChannelClient:
    def __init__(
        self,
        identity: Identity,
        outbox: Outbox,
        settings: AgentSettings,
        host: HostInfo,
        *,
        on_policy: PolicyHandler | None = None,
        live: LiveView | None = None,
        on_screen_burst: Callable[[], bool] | None = None,
        actions: Executor | None = None,
    ) -> None:
        self._identity = identity
        self._actions = actions
        # Running actions: they outlive the session that received them.
        self.action_tasks: set[asyncio.Task[None]] = set()
        self._on_screen_burst = on_screen_burst
        self._on_policy = on_policy
        self._live = live
        self._outbox = outbox
        self._settings = settings
        self._host = host
        self._wakeup = asyncio.Event()
        self._backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        self.connected = asyncio.Event()
        self.refusal: FatalRefusal | None = None
        loop = asyncio.get_running_loop()
        outbox.on_append(lambda: loop.call_soon_threadsafe(self._wakeup.set))

    async def run(self, stop: asyncio.Event) -> ChannelEnd:
        """Keep a session up until ``stop`` is set or the server refuses us for good."""
        ssl_context = client_ssl_context(self._identity.ca_path, self._identity)
        while not stop.is_set():
            try:
                await self._race(stop, self._session(ssl_context))
            except FatalRefusal as refusal:
                log.error("the server refused this device: %s", refusal)
                self.refusal = refusal
                return ChannelEnd.REFUSED
            except ssl.SSLCertVerificationError as exc:
                log.error(
                    "server certificate rejected (not the pinned deployment?): %s",
                    exc.verify_message,
                )
            except (
                OSError,
                InvalidHandshake,
                WebSocketException,
                TimeoutError,
                _SessionError,
                ProtocolError,
            ) as exc:
                log.warning("connection to %s lost: %s", self._identity.server_url, exc)
            finally:
                self.connected.clear()
            if stop.is_set():
                break
            delay = self._backoff.next_delay()
            log.info("reconnecting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        return ChannelEnd.STOPPED

    @staticmethod
    async def _race(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if task not in done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return
        task.result()

    async def _session(self, ssl_context: ssl.SSLContext) -> None:
        async with connect(
            self._identity.server_url,
            ssl=ssl_context,
            open_timeout=self._settings.connect_timeout_seconds,
            compression=None,
            max_size=_MAX_SERVER_FRAME,
            ping_interval=30,
            ping_timeout=60,
        ) as ws:
            await ws.send(
                encode_message(
                    Hello(
                        agent_version=__version__,
                        hostname=self._host.hostname,
                        os=self._host.os,
                        os_version=self._host.os_version,
                        capabilities=self._capabilities(),
                    )
                )
            )
            welcome = await self._expect_welcome(ws)
            self._outbox.ack_through(welcome.acked_seq)
            self._backoff.reset()
            self.connected.set()
            log.info("connected to %s as device %s", self._identity.server_url, welcome.device_id)
            window = asyncio.Semaphore(self._settings.inflight_batches)
            policies: asyncio.Queue[PolicyUpdate] = asyncio.Queue()
            tasks = [
                asyncio.create_task(self._send_events(ws, welcome, window)),
                asyncio.create_task(self._receive(ws, window, policies)),
                asyncio.create_task(self._heartbeat(ws, welcome.heartbeat_seconds)),
                asyncio.create_task(self._apply_policies(ws, policies)),
            ]
            if self._actions is not None:
                tasks.append(asyncio.create_task(self._flush_results(ws)))
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if self._live is not None:
                    await self._live.stop_all("the connection to the server was lost")

    def _capabilities(self) -> list[str]:
        capabilities = []
        if self._on_policy is not None:
            capabilities.append(CAPABILITY_POLICY)
        if self._live is not None:
            capabilities += [CAPABILITY_LIVE, CAPABILITY_REMOTE_CONTROL]
        if self._on_screen_burst is not None:
            capabilities.append(CAPABILITY_SCREEN_BURST)
        if self._actions is not None:
            capabilities.append(CAPABILITY_ACTIONS)
        return capabilities

    async def _read(self, ws: ClientConnection) -> object:
        frame = await ws.recv()
        if isinstance(frame, str):
            raise _SessionError("the server sent a text frame")
        message = decode_server_message(frame, _MAX_SERVER_FRAME)
        if isinstance(message, ErrorMessage):
            if message.code in _FATAL_CODES:
                raise FatalRefusal(message.code, message.message)
            raise _SessionError(f"server error {message.code}: {message.message}")
        return message

    async def _expect_welcome(self, ws: ClientConnection) -> Welcome:
        try:
            message = await asyncio.wait_for(self._read(ws), self._settings.connect_timeout_seconds)
        except ConnectionClosed as exc:
            raise _SessionError(f"closed before welcome: {exc}") from None
        if not isinstance(message, Welcome):
            raise _SessionError(f"expected welcome, got {message.__class__.__name__}")
        return message

    async def _send_events(
        self, ws: ClientConnection, welcome: Welcome, window: asyncio.Semaphore
    ) -> None:
        sent_through = welcome.acked_seq
        max_events = min(self._settings.batch_max_events, welcome.max_batch_events)
        # Leave room for the envelope within the server's frame limit.
        max_bytes = min(self._settings.batch_max_bytes, welcome.max_frame_bytes // 2)
        while True:
            await window.acquire()
            self._wakeup.clear()
            events = self._outbox.peek(sent_through, max_events=max_events, max_bytes=max_bytes)
            if not events:
                window.release()
                await self._wakeup.wait()
                # Linger briefly once woken: collectors append a few events at a time,
                # and one batch for what arrives in this window costs a fraction of
                # one batch (compress, frame, ack, delete) per append.
                await asyncio.sleep(self._settings.batch_linger_seconds)
                continue
            compression, body = encode_batch_body(events)
            await ws.send(
                encode_message(
                    EventBatch(
                        first_seq=events[0].seq,
                        last_seq=events[-1].seq,
                        count=len(events),
                        compression=compression,
                        body=body,
                    )
                )
            )
            sent_through = events[-1].seq

    async def _receive(
        self,
        ws: ClientConnection,
        window: asyncio.Semaphore,
        policies: asyncio.Queue[PolicyUpdate],
    ) -> None:
        while True:
            try:
                message = await self._read(ws)
            except ConnectionClosed as exc:
                raise _SessionError(f"closed by the server: {exc}") from None
            if isinstance(message, Ack):
                self._outbox.ack_through(message.through_seq)
                window.release()
                for rejection in message.rejected[:5]:
                    log.warning("server quarantined event %d: %s", rejection.seq, rejection.reason)
            elif isinstance(message, Command):
                await ws.send(encode_message(self._status(message)))
            elif isinstance(message, PolicyUpdate) and self._on_policy is not None:
                policies.put_nowait(message)
            elif isinstance(message, LiveStart) and self._live is not None:
                self._live.start(message, lambda m: self._send(ws, m))
            elif isinstance(message, LiveStop) and self._live is not None:
                self._live.stop(message)
            elif isinstance(message, LiveInput) and self._live is not None:
                self._live.input(message)
            elif isinstance(message, OperatorsUpdate) and self._actions is not None:
                applied = await asyncio.to_thread(self._actions.apply_operators, message)
                await ws.send(encode_message(applied))
            elif isinstance(message, ActionRequest) and self._actions is not None:
                task = asyncio.create_task(self._run_action(ws, message))
                self.action_tasks.add(task)
                task.add_done_callback(self.action_tasks.discard)
            elif isinstance(message, ScreenBurst) and self._on_screen_burst is not None:
                if self._on_screen_burst():
                    log.info(
                        "screenshot burst for alert %d (%s)", message.alert_id, message.rule_id
                    )
            else:
                raise _SessionError(f"unexpected {message.__class__.__name__} from the server")

    @staticmethod
    async def _send(ws: ClientConnection, message: Message) -> None:
        await ws.send(encode_message(message))

    @staticmethod
    def _sender(ws: ClientConnection) -> Callable[[Message], Awaitable[None]]:
        """Send on ``ws`` only; a closed connection raises ``NotSent``."""
        from sekimori.agent.actions.executor import NotSent  # noqa: PLC0415

        async def send(message: Message) -> None:
            try:
                await ws.send(encode_message(message))
            except ConnectionClosed as exc:
                raise NotSent(str(exc)) from None

        return send

    async def _run_action(self, ws: ClientConnection, request: ActionRequest) -> None:
        if self._actions is None:
            return
        try:
            await self._actions.execute(request, self._sender(ws))
        except Exception:
            # Broad on purpose: the executor answers every request itself; this is a
            # bug, logged, and must not take the channel down.
            log.exception("action request failed")

    async def _flush_results(self, ws: ClientConnection) -> None:
        """Results kept while the connection was down, sent after ``welcome``."""
        from sekimori.agent.actions.executor import NotSent  # noqa: PLC0415

        if self._actions is None:
            return
        try:
            sent = await self._actions.flush_pending(self._sender(ws))
        except NotSent:
            return
        if sent:
            log.info("sent %d action result(s) kept from an earlier connection", sent)

    async def _apply_policies(
        self, ws: ClientConnection, policies: asyncio.Queue[PolicyUpdate]
    ) -> None:
        if self._on_policy is None:
            return
        while True:
            update = await policies.get()
            # Only the newest matters when several wait (a burst of saves).
            while not policies.empty():
                update = policies.get_nowait()
            reply = await self._on_policy(update)
            await ws.send(encode_message(reply))

    def _status(self, command: Command) -> CommandResult:
        stats = self._outbox.stats()
        return CommandResult(
            command_id=command.command_id,
            ok=True,
            detail={
                "outbox_events": stats.events,
                "outbox_bytes": stats.bytes,
                "dropped_total": stats.dropped_total,
                "version": __version__,
            },
        )

    async def _heartbeat(self, ws: ClientConnection, interval: float) -> None:
        while True:
            stats = self._outbox.stats()
            await ws.send(
                encode_message(
                    Heartbeat(
                        outbox_events=stats.events,
                        outbox_bytes=stats.bytes,
                        dropped_total=stats.dropped_total,
                    )
                )
            )
            await asyncio.sleep(interval)
