"""Delivery of signed commands to connected agents, and their answers.

Each replica runs one ``ActionRouter`` for the agents connected to it (those that
listed the ``actions`` capability). Everything it needs is in the database, so any
replica can deliver any command, wherever it was created:

- **Keyrings.** Right after ``welcome`` the agent is sent ``operators`` with the whole
  published chain (oldest first, at most ``CHAIN_LIMIT``); the newest version is read
  every second and a new one is pushed to every connected agent at once.
- **Commands.** Every ``POLL_SECONDS`` (and at once when a command becomes ready in
  this process, ``wakeups.notify_ready``) the router reads the pending targets of
  ready, unexpired commands for its connected devices, claims each with a conditional
  UPDATE (pending → sent, so two replicas never both send) and sends ``action`` with
  the signed command, the device's Merkle path over the command's device list and,
  for ``run_script``/``install_package``, the library bytes. Delivery is at most
  once: a target stays ``sent`` if its agent disconnects before answering (a second
  copy would be refused by the agent's nonce store anyway). Only a frame that could
  not be written at all puts the target back to ``pending``.
- **Answers.** ``action_data`` chunks (a collected file) are assembled in memory, in
  order and size-capped, and stored in the encrypted blob store once the
  ``action_result`` names their SHA-256 and size; ``action_result`` moves the target to
  done/failed/refused. Results are written in batches by one task (one transaction for
  all that arrived meanwhile), each with its audit entry.
- **Expiry.** Every few seconds, commands past their expiry are expired (safe on all
  replicas at once: conditional updates).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import sqlalchemy as sa
from websockets.exceptions import ConnectionClosed

from sekimori.clock import now_us
from sekimori.protocol.actions import (
    CollectFileParams,
    InstallPackageParams,
    ProofStep,
    RunScriptParams,
    SignedCommand,
    decode_command_body,
    device_leaf,
)
from sekimori.protocol.codec import decode_server_message, encode_message
from sekimori.protocol.errors import ProtocolError
from sekimori.protocol.messages import (
    ActionData,
    ActionRequest,
    ActionResult,
    Message,
    OperatorsApplied,
    OperatorsUpdate,
)
from sekimori.protocol.signing import SignedKeyring, decode_keyring
from sekimori.server.actions.commands import expire_due
from sekimori.server.actions.keyrings import keyring_chain
from sekimori.server.actions.wakeups import register_waker, unregister_waker
from sekimori.server.blobs import BlobError, BlobStore
from sekimori.server.store import actions as store
from sekimori.server.store.audit import append_audit

__all__ = [
    "EXPIRY_SECONDS",
    "KEYRING_POLL_SECONDS",
    "MAX_COLLECTED_BYTES",
    "MAX_UPLOADS_BYTES",
    "POLL_SECONDS",
    "ActionRouter",
    "merkle_proofs",
]

log = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.2
KEYRING_POLL_SECONDS: Final = 1.0
EXPIRY_SECONDS: Final = 5.0
# The largest collected file the server keeps (held in memory while it arrives).
MAX_COLLECTED_BYTES: Final = 64 * 1024 * 1024
# All collected files arriving at once on this replica (memory bound); past it, the
# file that would cross it is dropped and its target fails.
MAX_UPLOADS_BYTES: Final = 256 * 1024 * 1024
# Commands whose bytes, proofs and attachment are kept between polls.
_CACHE_SIZE: Final = 256

Send = Callable[[str, Message], Awaitable[None]]


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_proofs(device_ids: Sequence[str]) -> dict[str, list[ProofStep]]:
    """Every device's path to the root in one pass (the same tree as
    ``sekimori.protocol.actions.merkle_proof``, which costs a whole tree per device:
    too slow for a fleet command)."""
    leaves = sorted({device_leaf(d): d for d in device_ids}.items())
    proofs: dict[str, list[ProofStep]] = {d: [] for _, d in leaves}
    # Each node carries the devices below it.
    level: list[tuple[bytes, list[str]]] = [(h, [d]) for h, d in leaves]
    while len(level) > 1:
        above: list[tuple[bytes, list[str]]] = []
        for i in range(0, len(level), 2):
            if i + 1 >= len(level):
                above.append(level[i])
                continue
            (left, left_ids), (right, right_ids) = level[i], level[i + 1]
            for d in left_ids:
                proofs[d].append(ProofStep(left=False, sibling=right))
            for d in right_ids:
                proofs[d].append(ProofStep(left=True, sibling=left))
            above.append((_node(left, right), left_ids + right_ids))
        level = above
    return proofs


@dataclass(slots=True)
class _Prepared:
    """What every target of one command is sent."""

    command: SignedCommand
    proofs: dict[str, list[ProofStep]]
    attachment: bytes
    action: str
    max_data: int
    expires_at_us: int


@dataclass(slots=True)
class _Upload:
    """A collected file arriving in ``action_data`` chunks."""

    limit: int
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


@dataclass(slots=True)
class _Result:
    device_id: str
    message: ActionResult
    data: bytes | None
    problem: str


class ActionRouter:
    """Routes commands to the agents connected to this replica (see the module
    docstring). ``send(device_id, message)`` writes one frame to that device's
    connection (raises ``LookupError`` if it is gone)."""

    def __init__(self, engine: sa.Engine, blobs: BlobStore | None, send: Send) -> None:
        self._engine = engine
        self._blobs = blobs
        self._send = send
        self._devices: set[str] = set()
        self._prepared: dict[str, _Prepared | None] = {}
        self._uploads: dict[tuple[str, str], _Upload] = {}
        self._upload_bytes = 0  # held by all uploads in progress
        self._results: list[_Result] = []
        self._results_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._chain: tuple[int, list[SignedKeyring]] = (0, [])
        self.routed = 0  # targets sent by this replica (tests, bench)

    # ---- connections ---------------------------------------------------------------

    async def device_connected(self, device_id: str) -> None:
        """An agent with the ``actions`` capability is welcome: send it the keyring
        chain, then route what waits for it."""
        self._devices.add(device_id)
        try:
            if not self._chain[1]:
                await self._refresh_chain()
        except (sa.exc.SQLAlchemyError, ValueError) as exc:
            log.warning("device %s: keyring chain not read: %s", device_id, exc)
        if self._chain[1]:
            await self._send(device_id, OperatorsUpdate(chain=self._chain[1]))
        self.wake()

    def device_gone(self, device_id: str) -> None:
        self._devices.discard(device_id)
        for key in [k for k in self._uploads if k[0] == device_id]:
            self._upload_bytes -= max(self._uploads.pop(key).size, 0)

    def wake(self) -> None:
        """Route now instead of at the next poll (thread-safe)."""
        if self._loop is None:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    # ---- answers -------------------------------------------------------------------

    async def receive(
        self, device_id: str, message: OperatorsApplied | ActionData | ActionResult
    ) -> None:
        if isinstance(message, OperatorsApplied):
            if message.ok:
                log.info("device %s trusts operator keyring %d", device_id, message.version)
            else:
                log.warning(
                    "device %s refused the operator keyring chain (keeps version %d): %s",
                    device_id,
                    message.version,
                    message.error[:300],
                )
        elif isinstance(message, ActionData):
            await self._data(device_id, message)
        else:
            self._result(device_id, message)

    async def _data(self, device_id: str, message: ActionData) -> None:
        key = (device_id, message.nonce)
        upload = self._uploads.get(key)
        if upload is None:
            limit = await asyncio.to_thread(self._upload_limit, device_id, message.nonce)
            if limit is None:
                log.warning("device %s: data for %s, which it was not sent", *key)
                return
            upload = self._uploads[key] = _Upload(limit=limit)
        if upload.size < 0:
            return  # already over the limit or out of order: dropped, reported at result
        if (
            message.offset != upload.size
            or upload.size + len(message.chunk) > upload.limit
            or self._upload_bytes + len(message.chunk) > MAX_UPLOADS_BYTES
        ):
            self._upload_bytes -= upload.size
            upload.chunks.clear()
            upload.size = -1
            return
        upload.chunks.append(message.chunk)
        upload.size += len(message.chunk)
        self._upload_bytes += len(message.chunk)

    def _upload_limit(self, device_id: str, nonce: str) -> int | None:
        with self._engine.connect() as conn:
            row = store.command_row(conn, nonce)
            if row is None or row.action != "collect_file":
                return None
            targets = [t for t in store.target_rows(conn, nonce) if t.device_id == device_id]
        if not targets or targets[0].state != "sent":
            return None
        try:
            params = decode_command_body(row.body).params
        except ValueError:
            return None
        wanted = params.max_bytes if isinstance(params, CollectFileParams) else 0
        return min(wanted, MAX_COLLECTED_BYTES)

    def _result(self, device_id: str, message: ActionResult) -> None:
        upload = self._uploads.pop((device_id, message.nonce), None)
        if upload is not None and upload.size > 0:
            self._upload_bytes -= upload.size
        data: bytes | None = None
        problem = ""
        if message.data_size or message.data_sha256:
            if upload is None or upload.size < 0:
                problem = "collected data missing, out of order or over the size limit"
            else:
                data = b"".join(upload.chunks)
                if len(data) != message.data_size:
                    problem = f"collected {len(data)} bytes, the agent reported {message.data_size}"
                elif hashlib.sha256(data).hexdigest() != message.data_sha256:
                    problem = "collected data does not match its SHA-256"
            if problem:
                data = None
        self._results.append(_Result(device_id, message, data, problem))
        self._results_ready.set()

    async def write_results(self) -> None:
        """Store answers as they come, many per transaction."""
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            batch, self._results = self._results, []
            if not batch:
                continue
            try:
                await asyncio.to_thread(self._store_results, batch)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("%d action results not stored (retrying): %s", len(batch), exc)
                self._results[:0] = batch
                await asyncio.sleep(1.0)
                self._results_ready.set()

    def _store_results(self, batch: list[_Result]) -> None:
        stored: list[tuple[_Result, str | None]] = []
        for item in batch:
            digest = None
            if item.data is not None and self._blobs is not None:
                try:
                    digest = self._blobs.put(item.data).sha256
                except BlobError as exc:
                    item.problem = f"collected data not stored: {exc}"
            stored.append((item, digest))
        answers: list[store.Result] = []
        for item, digest in stored:
            m = item.message
            server_note = f"server: {item.problem}" if item.problem else ""
            answers.append(
                store.Result(
                    nonce=m.nonce,
                    device_id=item.device_id,
                    state="failed" if item.problem and m.status == "done" else m.status,
                    reason="; ".join(r for r in (m.reason, server_note) if r)[:2000],
                    exit_code=m.exit_code,
                    output=m.output,
                    data_sha256=digest,
                    data_size=m.data_size if digest else None,
                )
            )
        with self._engine.begin() as conn:
            recorded = store.record_results(conn, answers, now_us())
            if len(recorded) < len(answers):
                log.warning(
                    "%d result(s) for commands their devices were not sent (or answered "
                    "twice) ignored",
                    len(answers) - len(recorded),
                )
            # One entry per command per batch (a fleet command's thousand answers
            # arrive together), listing every device's result.
            audited: dict[str, list[list[object]]] = {}
            for r in recorded:
                audited.setdefault(r.nonce, []).append(
                    [r.device_id, r.state, r.exit_code, r.reason[:200], r.data_sha256]
                )
            for nonce, results in audited.items():
                append_audit(
                    conn,
                    actor="system",
                    action="action.result",
                    target=nonce,
                    detail={
                        "columns": ["device_id", "status", "exit_code", "reason", "data_sha256"],
                        "results": results,
                    },
                )

    # ---- delivery ------------------------------------------------------------------

    async def run(self) -> None:
        """Poll and route until cancelled; also the keyring push and expiry."""
        self._loop = asyncio.get_running_loop()
        register_waker(self._engine, self.wake)
        writer = asyncio.create_task(self.write_results())
        last_keyring = last_expiry = 0.0
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                self._wake.clear()
                now = self._loop.time()
                try:
                    if now - last_keyring >= KEYRING_POLL_SECONDS:
                        last_keyring = now
                        await self._push_new_keyring()
                    if now - last_expiry >= EXPIRY_SECONDS:
                        last_expiry = now
                        await asyncio.to_thread(expire_due, self._engine)
                    await self.route_once()
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("action routing poll failed: %s", exc)
                except ValueError as exc:  # a stored keyring that does not decode
                    log.error("action routing poll failed: %s", exc)
        finally:
            unregister_waker(self._engine, self.wake)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            # Shutting down: store the answers that arrived since the last write.
            batch, self._results = self._results, []
            if batch:
                try:
                    await asyncio.to_thread(self._store_results, batch)
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("%d action results lost at shutdown: %s", len(batch), exc)

    async def _refresh_chain(self) -> bool:
        """Re-read the chain if a newer version exists; True if it changed."""
        chain = await asyncio.to_thread(keyring_chain, self._engine)
        version = len(chain) and _version(chain[-1])
        if version == self._chain[0]:
            return False
        self._chain = (version, chain)
        return True

    async def _push_new_keyring(self) -> None:
        if not await self._refresh_chain() or not self._devices:
            return
        message = OperatorsUpdate(chain=self._chain[1])
        devices = list(self._devices)
        results = await asyncio.gather(
            *(self._send(d, message) for d in devices), return_exceptions=True
        )
        for device_id, result in zip(devices, results, strict=True):
            if isinstance(result, Exception) and not isinstance(
                result, (ConnectionClosed, LookupError)
            ):
                log.warning("device %s: keyring not sent: %s", device_id, result)

    async def route_once(self) -> int:
        """Send every ready target of the connected devices; returns how many."""
        if not self._devices:
            return 0
        devices = list(self._devices)
        claimed = await asyncio.to_thread(self._claim, devices)
        if not claimed:
            return 0
        sends = [self._deliver(nonce, device_id) for nonce, device_id in claimed]
        results = await asyncio.gather(*sends, return_exceptions=True)
        failed = [
            target for target, result in zip(claimed, results, strict=True) if result is not True
        ]
        if failed:
            await asyncio.to_thread(self._release, failed)
        sent = len(claimed) - len(failed)
        self.routed += sent
        return sent

    def _claim(self, devices: list[str]) -> list[tuple[str, str]]:
        now = now_us()
        with self._engine.begin() as conn:
            by_command: dict[str, list[str]] = {}
            for nonce, device_id in store.ready_targets(conn, devices, now):
                by_command.setdefault(nonce, []).append(device_id)
            claimed: list[tuple[str, str]] = []
            for nonce, ids in by_command.items():
                if nonce not in self._prepared:
                    self._prepared[nonce] = self._prepare(conn, nonce, now)
                if self._prepared[nonce] is None:
                    continue
                mine = store.claim_targets(conn, nonce, ids, now)
                if not mine:
                    continue
                claimed += [(nonce, d) for d in mine]
                append_audit(
                    conn,
                    actor="system",
                    action="action.dispatch",
                    target=nonce,
                    detail={"device_count": len(mine), "devices": sorted(mine)[:50]},
                )
        while len(self._prepared) > _CACHE_SIZE:
            del self._prepared[next(iter(self._prepared))]
        return claimed

    def _prepare(self, conn: sa.Connection, nonce: str, now: int) -> _Prepared | None:
        """What each target of the command is sent, or None for a stored command
        the server cannot even decode (a row written around the service API): its
        targets fail, once, instead of stopping the routing of every other command."""
        row = store.command_row(conn, nonce)
        if row is None:
            return None
        try:
            params = decode_command_body(row.body).params
            signatures = store.decode_signatures(row.signatures)
            command = SignedCommand(body=row.body, signatures=signatures)
            # Every limit of the wire format, checked now (msgspec checks them on
            # decoding only): the agent would refuse the whole frame otherwise.
            decode_server_message(encode_message(ActionRequest(command=command)), 1 << 23)
        except (ValueError, TypeError, ProtocolError) as exc:
            log.error("command %s cannot be sent: %s", nonce, exc)
            failed = store.fail_pending_targets(
                conn, nonce, f"server: the stored command cannot be sent ({exc})"[:2000], now
            )
            append_audit(
                conn,
                actor="system",
                action="action.undeliverable",
                target=nonce,
                detail={"reason": str(exc)[:500], "targets": failed},
            )
            return None
        attachment = b""
        if isinstance(params, (RunScriptParams, InstallPackageParams)):
            item = store.library_item(conn, params.sha256)
            attachment = item[1] if item is not None else b""
        return _Prepared(
            command=command,
            proofs=merkle_proofs(store.command_device_ids(conn, nonce)),
            attachment=attachment,
            action=row.action,
            max_data=params.max_bytes if isinstance(params, CollectFileParams) else 0,
            expires_at_us=row.expires_at_us,
        )

    async def _deliver(self, nonce: str, device_id: str) -> bool:
        prepared = self._prepared.get(nonce)
        if prepared is None:
            return False
        await self._send(
            device_id,
            ActionRequest(
                command=prepared.command,
                device_proof=prepared.proofs.get(device_id, []),
                attachment=prepared.attachment,
            ),
        )
        return True

    def _release(self, targets: list[tuple[str, str]]) -> None:
        with self._engine.begin() as conn:
            for nonce, device_id in targets:
                store.release_target(conn, nonce, device_id)


def _version(signed: SignedKeyring) -> int:
    return decode_keyring(signed.body).version
