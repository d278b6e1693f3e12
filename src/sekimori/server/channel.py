"""The agent-facing endpoint: TLS WebSocket, mutual authentication, ingest, acks.

One connection per device. A connection without a client certificate may do exactly
one thing: enroll. A connection with one (verified by TLS against the device CA,
proving possession of the device key) is checked against the registry: unknown,
re-keyed or revoked devices are refused. Revocations are polled from the store and
disconnect the device within ``revocation_poll_seconds``.

Every refusal sends an ``error`` message with a code and a reason, logs a line, and
closes; nothing reaches the store unless the whole batch frame is valid.

Collection policies: an agent that lists the ``policy`` capability in ``hello`` is
sent its group's current policy right after ``welcome`` (the default, version 0, for
a group that never had one saved); ``watch_policies`` polls the newest version of
each group every second and sends a new one to the group's connected agents at once.
An agent that was offline gets the current one when it reconnects. Its
``policy_applied`` answer is recorded in ``device_policy`` (what the console shows).

Live view: ``self.live`` (``sekimori.server.live.LiveSessions``) sends ``live_start``
and ``live_stop`` to agents that listed the ``live`` capability; their ``live_state``
and ``live_frame`` answers are handed to it as they arrive (never stored, never acked).

Signed remote actions: ``self.actions`` (``sekimori.server.actions.routing.ActionRouter``)
sends agents that listed the ``actions`` capability the operator keyring chain after
``welcome`` and on each new version, delivers ready commands to them and stores their
``action_data``/``action_result`` answers (``operators_applied`` is logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sekimori import __version__
from sekimori.clock import now_us
from sekimori.protocol import (
    CAPABILITY_LIVE,
    CAPABILITY_POLICY,
    CAPABILITY_SCREEN_BURST,
    Ack,
    Command,
    CommandResult,
    Enroll,
    ErrorMessage,
    EventBatch,
    Heartbeat,
    Hello,
    InvalidPolicy,
    LiveFrame,
    LiveState,
    PolicyApplied,
    PolicyUpdate,
    ProtocolError,
    Rejection,
    ScreenBurst,
    Welcome,
    decode_agent_message,
    decode_batch_events,
    encode_message,
    encode_policy_document,
)
from sekimori.protocol.messages import (
    CAPABILITY_ACTIONS,
    CAPABILITY_REMOTE_CONTROL,
    ActionData,
    ActionResult,
    LiveControl,
    Message,
    OperatorsApplied,
)
from sekimori.protocol.policy import Policy
from sekimori.server.actions.routing import ActionRouter
from sekimori.server.batch_rows import stored_batch
from sekimori.server.blobs import BlobStore
from sekimori.server.enrollment import check_host_fields, enroll_device
from sekimori.server.ingest import IngestWriter, StoreUnavailable
from sekimori.server.live import LiveSessions
from sekimori.server.metrics import Metrics
from sekimori.server.pki import PKI, EnrollmentRefused, peer_device_certificate
from sekimori.server.store import devices as registry
from sekimori.server.store.events import StoredBatch
from sekimori.server.store.policies import current_policy, record_applied
from sekimori.server.store.policy_push import device_groups, newest_policy_versions
from sekimori.server.store.schema import devices as devices_table
from sekimori.server.store.tokens import TokenRefused
from sekimori.settings import ServerSettings

__all__ = ["CA_PATH", "AgentChannel"]

log = logging.getLogger(__name__)

CA_PATH = "/v1/ca.pem"
AGENT_PATH = "/v1/agent"
FIRST_MESSAGE_TIMEOUT = 10.0
# Close codes (4000-4999 are for applications).
CLOSE_PROTOCOL = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_REVOKED = 4403
CLOSE_REPLACED = 4409
CLOSE_STORE = 4503
# Agents keep a few batches in flight (agent.inflight_batches, default 4); a peer that
# ignores acks would otherwise grow the server's queues without bound.
MAX_UNACKED_BATCHES = 32
# Revocation polls between full sweeps of the connected devices.
_SWEEP_EVERY = 25
# How often the newest policy version of each group is read.
POLICY_POLL_SECONDS = 1.0
# Policy polls between re-reading the groups of connected devices (a device moved to
# another group gets that group's policy within this many polls).
_POLICY_GROUP_SWEEP_EVERY = 10


class _Refusal(Exception):
    def __init__(self, code: str, message: str, close_code: int, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code
        self.retryable = retryable


@dataclass(slots=True)
class _Session:
    device_id: str
    ws: ServerConnection
    # Highest sequence number received on this connection (queued or committed).
    received_through: int
    acks: asyncio.Queue[tuple[asyncio.Future[StoredBatch], int, list[Rejection]] | None] = field(
        default_factory=asyncio.Queue
    )
    # Policy push (only for agents with the "policy" capability).
    wants_policy: bool = False
    group: tuple[int, str] | None = None  # (id, name), read when first needed
    policy_sent: int | None = None  # the version last sent on this connection
    policies_offered: set[int] = field(default_factory=set)
    policy_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Live view (only for agents with the "live" capability).
    wants_live: bool = False
    wants_control: bool = False  # "remote_control": live_input
    wants_burst: bool = False
    # Signed remote actions (only for agents with the "actions" capability).
    wants_actions: bool = False


class AgentChannel:
    def __init__(
        self,
        settings: ServerSettings,
        engine: sa.Engine,
        pki: PKI,
        writer: IngestWriter,
        metrics: Metrics,
        *,
        blobs: BlobStore | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._pki = pki
        self._writer = writer
        self._metrics = metrics
        self._ca_pem = pki.ca_pem()
        self._sessions: dict[str, _Session] = {}
        self._heartbeats: dict[str, tuple[int, int]] = {}
        self._outbox_depths: dict[str, int] = {}
        self._pending_commands: dict[str, asyncio.Future[CommandResult]] = {}
        self.live = LiveSessions(self._send_live, self._live_capable, self._control_capable)
        self.actions = ActionRouter(engine, blobs, self._send_actions)

    @property
    def connected_devices(self) -> list[str]:
        return list(self._sessions)

    # ---- HTTP before the WebSocket handshake -----------------------------------------

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Serve the CA certificate (public; the agent checks its fingerprint against
        the pinned one) and refuse every path but the agent endpoint."""
        if request.path == CA_PATH:
            return Response(
                200, "OK", Headers([("Content-Type", "application/x-pem-file")]), self._ca_pem
            )
        if request.path != AGENT_PATH:
            return connection.respond(404, "not found\n")
        return None

    # ---- connections -----------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        ssl_object: ssl.SSLObject | None = ws.transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        try:
            if der is None:
                await self._enrollment(ws)
            else:
                await self._device_session(ws, der)
        except _Refusal as refusal:
            self._metrics.protocol_errors.labels(refusal.code).inc()
            log.warning("refused %s: %s: %s", peer, refusal.code, refusal.message)
            await self._send_error(ws, refusal.code, refusal.message, refusal.retryable)
            await ws.close(refusal.close_code, refusal.code)
        except ConnectionClosed:
            pass

    async def _send_error(self, ws: ServerConnection, code: str, message: str, retry: bool) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode_message(ErrorMessage(code=code, message=message, retryable=retry)))

    async def _first_message(self, ws: ServerConnection) -> Any:
        try:
            frame = await asyncio.wait_for(ws.recv(), FIRST_MESSAGE_TIMEOUT)
        except TimeoutError:
            raise _Refusal("timeout", "no message within 10 seconds", CLOSE_PROTOCOL) from None
        return self._decode(frame)

    def _decode(self, frame: str | bytes) -> Any:
        if isinstance(frame, str):
            raise _Refusal("invalid_message", "text frames are not accepted", CLOSE_PROTOCOL)
        try:
            return decode_agent_message(frame, self._settings.max_frame_bytes)
        except ProtocolError as exc:
            raise _Refusal(exc.code, exc.message, CLOSE_PROTOCOL) from None

    async def _enrollment(self, ws: ServerConnection) -> None:
        message = await self._first_message(ws)
        if not isinstance(message, Enroll):
            raise _Refusal(
                "unauthenticated",
                "this connection has no device certificate: only enrollment is possible",
                CLOSE_UNAUTHENTICATED,
            )
        try:
            reply = await asyncio.to_thread(enroll_device, self._engine, self._pki, message)
        except (TokenRefused, EnrollmentRefused) as exc:
            self._metrics.enrollments.labels("refused").inc()
            raise _Refusal("enrollment_refused", str(exc), CLOSE_UNAUTHENTICATED) from None
        self._metrics.enrollments.labels("ok").inc()
        await ws.send(encode_message(reply))
        await ws.close()

    async def _device_session(self, ws: ServerConnection, der: bytes) -> None:
        device_id, serial = peer_device_certificate(der)
        device = await asyncio.to_thread(self._load_device, device_id)
        if device is None or device.cert_serial != serial:
            raise _Refusal(
                "unknown_device", "this device is not enrolled here", CLOSE_UNAUTHENTICATED
            )
        if device.revoked_us is not None:
            raise _Refusal(
                "revoked", "this device was revoked; enroll it again to reconnect", CLOSE_REVOKED
            )
        hello = await self._first_message(ws)
        if not isinstance(hello, Hello):
            raise _Refusal("invalid_message", "the first message must be 'hello'", CLOSE_PROTOCOL)
        try:
            check_host_fields(hello.hostname, hello.os, hello.os_version, hello.agent_version)
        except EnrollmentRefused as exc:
            raise _Refusal("invalid_message", str(exc), CLOSE_PROTOCOL) from None
        previous = self._sessions.get(device_id)
        if previous is not None:
            # The same device connected again (network change, restart): the newer
            # connection wins; the old one's uncommitted batches are resent and dedup'd.
            await previous.ws.close(CLOSE_REPLACED, "replaced by a newer connection")
        await asyncio.to_thread(self._mark_connected, device_id, hello)
        # Another replica may have counted this device's threshold windows since.
        self._writer.rules.forget(device_id)
        session = _Session(device_id=device_id, ws=ws, received_through=device.acked_seq)
        session.wants_live = CAPABILITY_LIVE in hello.capabilities
        session.wants_control = CAPABILITY_REMOTE_CONTROL in hello.capabilities
        session.wants_burst = CAPABILITY_SCREEN_BURST in hello.capabilities
        self._sessions[device_id] = session
        self._metrics.agents_connected.set(len(self._sessions))
        log.info("device %s (%s) connected from %s", device_id, hello.hostname, ws.remote_address)
        acker = asyncio.create_task(self._acknowledge(session))
        try:
            await ws.send(
                encode_message(
                    Welcome(
                        device_id=device_id,
                        server_version=__version__,
                        heartbeat_seconds=self._settings.heartbeat_seconds,
                        max_frame_bytes=self._settings.max_frame_bytes,
                        max_batch_events=self._settings.max_batch_events,
                        acked_seq=device.acked_seq,
                    )
                )
            )
            if CAPABILITY_POLICY in hello.capabilities:
                session.wants_policy = True
                await self._push_policy(session, {})
            if CAPABILITY_ACTIONS in hello.capabilities:
                session.wants_actions = True
                await self.actions.device_connected(device_id)
            async for frame in ws:
                await self._dispatch(session, self._decode(frame))
        finally:
            session.acks.put_nowait(None)
            with contextlib.suppress(ConnectionClosed, StoreUnavailable):
                await acker
            if self._sessions.get(device_id) is session:
                del self._sessions[device_id]
                self.live.device_gone(device_id)
                self.actions.device_gone(device_id)
                self._outbox_depths.pop(device_id, None)
                self._metrics.agent_outbox_events.set(sum(self._outbox_depths.values()))
                self._metrics.agents_connected.set(len(self._sessions))
                await asyncio.to_thread(self._mark_disconnected, device_id)
            log.info("device %s disconnected", device_id)

    def _load_device(self, device_id: str) -> registry.Device | None:
        with self._engine.connect() as conn:
            return registry.get_device(conn, device_id)

    def _mark_connected(self, device_id: str, hello: Hello) -> None:
        with self._engine.begin() as conn:
            registry.mark_connected(
                conn,
                device_id,
                hostname=hello.hostname,
                os=hello.os,
                os_version=hello.os_version,
                agent_version=hello.agent_version,
            )

    def _mark_disconnected(self, device_id: str) -> None:
        with self._engine.begin() as conn:
            registry.mark_disconnected(conn, device_id)

    async def _dispatch(self, session: _Session, message: Any) -> None:
        if isinstance(message, EventBatch):
            await self._batch(session, message)
        elif isinstance(message, Heartbeat):
            self._heartbeats[session.device_id] = (message.outbox_events, message.dropped_total)
            self._outbox_depths[session.device_id] = message.outbox_events
            self._metrics.agent_outbox_events.set(sum(self._outbox_depths.values()))
        elif isinstance(message, PolicyApplied):
            await self._policy_applied(session, message)
        elif isinstance(message, (LiveFrame, LiveState, LiveControl)) and session.wants_live:
            self.live.deliver(session.device_id, message)
        elif (
            isinstance(message, (OperatorsApplied, ActionData, ActionResult))
            and session.wants_actions
        ):
            await self.actions.receive(session.device_id, message)
        elif isinstance(message, CommandResult):
            waiter = self._pending_commands.pop(message.command_id, None)
            if waiter is None or waiter.done():
                log.warning(
                    "device %s: result for unknown command %r",
                    session.device_id,
                    message.command_id[:64],
                )
            else:
                waiter.set_result(message)
        else:
            raise _Refusal(
                "invalid_message",
                f"unexpected {message.__class__.__name__} message",
                CLOSE_PROTOCOL,
            )

    # ---- ingest ----------------------------------------------------------------------

    async def _batch(self, session: _Session, batch: EventBatch) -> None:
        try:
            events = decode_batch_events(
                batch,
                max_inflated_bytes=self._settings.max_inflated_batch_bytes,
                max_events=self._settings.max_batch_events,
            )
        except ProtocolError as exc:
            raise _Refusal(exc.code, exc.message, CLOSE_PROTOCOL) from None
        # The whole batch, not just its start, must lie within reach: one far-future
        # seq would raise the dedup high-water mark and make later events "duplicates".
        if batch.last_seq - session.received_through > self._settings.max_sequence_gap:
            raise _Refusal(
                "sequence_from_future",
                f"batch reaches seq {batch.last_seq} but this device has stored only through "
                f"{session.received_through}",
                CLOSE_PROTOCOL,
            )
        if session.acks.qsize() >= MAX_UNACKED_BATCHES:
            raise _Refusal(
                "too_many_unacked",
                f"more than {MAX_UNACKED_BATCHES} batches sent without waiting for acks",
                CLOSE_PROTOCOL,
            )
        floor = session.received_through
        stored, rejections = stored_batch(
            session.device_id,
            events,
            floor=floor,
            through_seq=batch.last_seq,
            received_us=now_us(),
        )
        session.received_through = max(floor, batch.last_seq)
        if rejections:
            log.warning(
                "device %s: %d events quarantined, first: seq %d: %s",
                session.device_id,
                len(rejections),
                rejections[0].seq,
                rejections[0].reason,
            )
        future = self._writer.submit(stored)
        await session.acks.put((future, len(events), rejections))

    async def _acknowledge(self, session: _Session) -> None:
        """Send acks in order, each only after its batch is committed."""
        while True:
            item = await session.acks.get()
            if item is None:
                return
            future, received, rejections = item
            try:
                batch = await future
            except StoreUnavailable as exc:
                await self._send_error(session.ws, "store_unavailable", str(exc), True)
                await session.ws.close(CLOSE_STORE, "store unavailable")
                return
            await session.ws.send(
                encode_message(
                    Ack(
                        through_seq=batch.through_seq,
                        stored=batch.inserted,
                        duplicates=received - batch.inserted - len(rejections),
                        rejected=rejections,
                    )
                )
            )
            if batch.opened_alerts and session.wants_burst:
                # A rule fired on this PC: its screens collector (if the policy runs
                # it) sends what was on the screen around that moment. One per batch.
                alert_id, rule_id = batch.opened_alerts[0]
                await session.ws.send(
                    encode_message(ScreenBurst(alert_id=alert_id, rule_id=rule_id[:128]))
                )

    # ---- commands down ---------------------------------------------------------------

    async def request_status(self, device_id: str, timeout: float = 10.0) -> CommandResult:
        """Ask a connected agent for its status (read-only: outbox depth, version).

        Raises LookupError if the device is not connected here, TimeoutError if it
        does not answer. Commands that change a PC are not sent this way: they need an
        operator signature the agent verifies (see THREAT_MODEL.md).
        """
        session = self._sessions.get(device_id)
        if session is None:
            raise LookupError(f"device {device_id} is not connected to this server")
        command_id = uuid.uuid4().hex
        waiter: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._pending_commands[command_id] = waiter
        try:
            await session.ws.send(encode_message(Command(command_id=command_id, name="status")))
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._pending_commands.pop(command_id, None)

    # ---- live view -----------------------------------------------------------------------

    async def _send_live(self, device_id: str, message: Message) -> None:
        session = self._sessions.get(device_id)
        if session is None or not session.wants_live:
            raise LookupError(f"device {device_id} is not connected here with live view")
        await session.ws.send(encode_message(message))

    def _live_capable(self, device_id: str) -> bool | None:
        session = self._sessions.get(device_id)
        return None if session is None else session.wants_live

    def _control_capable(self, device_id: str) -> bool | None:
        session = self._sessions.get(device_id)
        return None if session is None else session.wants_live and session.wants_control

    # ---- signed remote actions --------------------------------------------------------

    async def _send_actions(self, device_id: str, message: Message) -> None:
        session = self._sessions.get(device_id)
        if session is None or not session.wants_actions:
            raise LookupError(f"device {device_id} is not connected here with actions")
        await session.ws.send(encode_message(message))

    # ---- collection policies ------------------------------------------------------------

    async def _push_policy(
        self, session: _Session, cache: dict[int, tuple[int, bytes] | None]
    ) -> None:
        """Send the session's group policy unless it has that version already.
        ``cache`` holds documents read during one poll (``{group_id: (version,
        document)}``, None for one that cannot be sent). A store error is logged: the
        next poll tries again."""
        async with session.policy_lock:
            try:
                if session.group is None:
                    found = await asyncio.to_thread(
                        device_groups, self._engine, [session.device_id]
                    )
                    session.group = found.get(session.device_id)
                    if session.group is None:
                        return
                group_id, name = session.group
                if group_id not in cache:
                    cache[group_id] = await asyncio.to_thread(self._policy_document, group_id)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("device %s: policy not sent: %s", session.device_id, exc)
                return
            entry = cache[group_id]
            if entry is None or entry[0] == session.policy_sent:
                return
            version, document = entry
            session.policies_offered.add(version)
            session.policy_sent = version
            await session.ws.send(
                encode_message(PolicyUpdate(group=name, version=version, document=document))
            )

    def _policy_document(self, group_id: int) -> tuple[int, bytes] | None:
        try:
            stored = current_policy(self._engine, group_id)
        except msgspec.DecodeError as exc:  # a row written around validate_policy
            log.error("the current policy of group %d is not valid: %s", group_id, exc)
            return None
        version, policy = (stored.version, stored.policy) if stored else (0, Policy())
        try:
            return version, encode_policy_document(policy)
        except InvalidPolicy as exc:
            log.error("policy version %d of group %d cannot be sent: %s", version, group_id, exc)
            return None

    async def _policy_applied(self, session: _Session, message: PolicyApplied) -> None:
        if message.version not in session.policies_offered:
            log.warning(
                "device %s: policy_applied for version %d, which it was not sent",
                session.device_id,
                message.version,
            )
            return
        if not message.ok:
            log.warning(
                "device %s refused policy version %d: %s",
                session.device_id,
                message.version,
                message.error[:300],
            )
            return
        try:
            await asyncio.to_thread(
                record_applied, self._engine, session.device_id, message.version, now_us=now_us()
            )
        except sa.exc.SQLAlchemyError as exc:
            log.warning("device %s: policy version not recorded: %s", session.device_id, exc)

    async def watch_policies(self) -> None:
        """Send each group's new policy version to its connected agents at once.

        Each poll reads only the newest version per group; documents are read for the
        groups whose agents run an older one. Every few polls the connected devices'
        groups are read again, so a device moved to another group gets its policy.
        """
        polls = 0
        while True:
            await asyncio.sleep(POLICY_POLL_SECONDS)
            polls += 1
            sessions = [s for s in self._sessions.values() if s.wants_policy]
            if not sessions:
                continue
            try:
                if polls % _POLICY_GROUP_SWEEP_EVERY == 0:
                    ids = [s.device_id for s in sessions]
                    current = await asyncio.to_thread(device_groups, self._engine, ids)
                    for s in sessions:
                        if s.device_id in current and current[s.device_id] != s.group:
                            s.group = current[s.device_id]
                            s.policy_sent = None  # the new group's policy, whatever version
                newest = await asyncio.to_thread(newest_policy_versions, self._engine)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("policy poll failed: %s", exc)
                continue
            stale = [
                s for s in sessions if s.group is None or newest.get(s.group[0], 0) != s.policy_sent
            ]
            if not stale:
                continue
            cache: dict[int, tuple[int, bytes] | None] = {}
            # Concurrently: one slow agent's full send buffer must not delay the rest.
            results = await asyncio.gather(
                *(self._push_policy(s, cache) for s in stale), return_exceptions=True
            )
            for s, result in zip(stale, results, strict=True):
                if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
                    log.warning("device %s: policy not sent: %s", s.device_id, result)

    # ---- background duties -------------------------------------------------------------

    async def watch_revocations(self) -> None:
        """Disconnect revoked devices within one poll interval.

        Each poll asks for revocations stamped in the last few seconds (cheap with the
        index on revoked_us); every ``_SWEEP_EVERY`` polls, every connected device is
        checked outright, so a revocation stamped by a host with a lagging clock is
        still enforced within seconds.
        """
        since = now_us()
        polls = 0
        while True:
            await asyncio.sleep(self._settings.revocation_poll_seconds)
            polls += 1
            if not self._sessions:
                since = now_us() - 2_000_000
                continue
            sweep = polls % _SWEEP_EVERY == 0
            # Overlap the window by 2 s: a revocation committed by another process
            # with a slightly older timestamp is still seen.
            check_from = since - 2_000_000
            since = now_us()
            try:
                revoked = await asyncio.to_thread(
                    self._revoked, None if not sweep else list(self._sessions), check_from
                )
            except sa.exc.SQLAlchemyError as exc:
                log.warning("revocation poll failed: %s", exc)
                continue
            for device_id in revoked:
                session = self._sessions.get(device_id)
                if session is not None:
                    log.warning("device %s revoked: disconnecting", device_id)
                    await self._send_error(session.ws, "revoked", "this device was revoked", False)
                    await session.ws.close(CLOSE_REVOKED, "revoked")

    def _revoked(self, connected: list[str] | None, since: int) -> set[str]:
        with self._engine.connect() as conn:
            found = {device_id for device_id, _ in registry.revoked_since(conn, since)}
            if connected is not None:
                found |= registry.revoked_among(conn, connected)
        return found

    async def flush_presence(self) -> None:
        """Refresh last_seen for connected devices and store heartbeat figures."""
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            heartbeats, self._heartbeats = self._heartbeats, {}
            connected = list(self._sessions)
            try:
                await asyncio.to_thread(self._write_presence, connected, heartbeats)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("presence update failed: %s", exc)

    def _write_presence(self, connected: list[str], heartbeats: dict[str, tuple[int, int]]) -> None:
        with self._engine.begin() as conn:
            registry.touch_devices(conn, connected)
            if heartbeats:
                conn.execute(
                    sa.update(devices_table)
                    .where(devices_table.c.id == sa.bindparam("b_id"))
                    .values(
                        outbox_events=sa.bindparam("b_events"),
                        dropped_total=sa.bindparam("b_dropped"),
                    ),
                    [
                        {"b_id": d, "b_events": e, "b_dropped": x}
                        for d, (e, x) in heartbeats.items()
                    ],
                )
