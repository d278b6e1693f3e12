"""``sekimori bench actions``: how fast a signed remote action reaches PCs and how fast
their results are stored, with 1,000 connected agents.

What runs:

1. a real ``sekimori server`` process (temporary data directory, SQLite by default);
2. ``--agents`` simulated agents in this process's asyncio loop, each on its own TLS
   connection with its own device certificate (issued by the deployment's device CA
   straight from the PKI files, so that 1,000 enrollments do not dominate the run),
   listing the ``actions`` capability. Each pins the operator keyring the server sends
   by its fingerprint and checks every command like the agent does —
   ``verify_command``: signatures against the pinned keyring, deployment, Merkle
   proof for its device id, times, signers needed — then answers ``action_result``
   done at once (it runs nothing);
3. "console clicks" made as the console makes them, through the service API on the
   server's store: ``create_command`` then ``add_command_signature`` (Ed25519); the
   clock starts when the last needed signature is stored (the command is ready);
4. ``--clicks`` single-device ``lock`` commands one after the other, and
   ``--fleet-rounds`` fleet-wide ``lock`` commands to every agent (above the fleet
   threshold: two operators sign);
5. the baseline in the same run, on the same connections: a WebSocket ping round trip
   from each agent to the server.

Latency to receipt: ready → the agent has the whole ``action`` frame (this process's
clock). To result stored: ready → the result is committed and visible in the store
(polled every 10 ms). Goal: p99 ≤ 1 s.

The server notices a command made in another process by polling (every 200 ms); a
command made in the server's own process (a console click) wakes its router at once.
Here the clicks come from this process, so the figures include the poll delay.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import ssl
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import ClientConnection, connect

from sekimori.bench._server import BenchmarkFailed, BenchServer, running_server
from sekimori.clock import now_us
from sekimori.protocol import Hello, Welcome, decode_server_message, encode_message
from sekimori.protocol.actions import LockParams, decode_command_body
from sekimori.protocol.messages import ActionRequest, ActionResult, OperatorsUpdate
from sekimori.protocol.signing import (
    Keyring,
    OperatorKey,
    Refused,
    decode_keyring,
    key_id,
    keyring_fingerprint,
    sign_ed25519,
    verify_command,
)
from sekimori.server import actions as service
from sekimori.server.pki import PKI
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.schema import action_targets, devices

__all__ = ["GOAL_P99_MS", "main"]

GOAL_P99_MS = 1000.0
_TIMEOUT = 60.0


@dataclass(slots=True)
class _Agent:
    device_id: str
    context: ssl.SSLContext
    ws: ClientConnection | None = None
    keyring: Keyring | None = None
    received: dict[str, int] = field(default_factory=dict)  # nonce -> receipt time
    refused: list[str] = field(default_factory=list)
    # Commands answered at once, verified after the round (off the clock).
    unverified: list[tuple[ActionRequest, int]] = field(default_factory=list)


def _operator(name: str) -> tuple[ed25519.Ed25519PrivateKey, OperatorKey]:
    private = ed25519.Ed25519PrivateKey.generate()
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, OperatorKey(key_id=key_id(der), operator=name, kind="ed25519", public_key=der)


def _identities(server: BenchServer, count: int, workdir: Path) -> list[_Agent]:
    """Device certificates from the device CA for one shared key, and device rows."""
    pki = PKI(server.data_dir / "pki")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    key_path = workdir / "device.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    agents: list[_Agent] = []
    rows = []
    for i in range(count):
        device_id = str(uuid.uuid4())
        cert, serial = pki.sign_device_csr(csr, device_id)
        cert_path = workdir / f"{i}.crt"
        cert_path.write_text(cert)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_verify_locations(cafile=str(pki.ca_cert_path))
        context.load_cert_chain(cert_path, key_path)
        agents.append(_Agent(device_id, context))
        rows.append(
            {
                "id": device_id,
                "hostname": f"bench-{i:04d}",
                "os": "linux",
                "os_version": "bench",
                "agent_version": "0.1.0",
                "cert_serial": serial,
                "enrolled_us": now_us(),
                "connected": False,
                "acked_seq": 0,
                "outbox_events": 0,
                "dropped_total": 0,
            }
        )
    with server.engine.begin() as conn:
        group_id = ensure_group(conn, "default")
        conn.execute(sa.insert(devices), [{**r, "group_id": group_id} for r in rows])
    return agents


async def _agent_loop(
    agent: _Agent,
    url: str,
    fingerprint: str,
    connected: asyncio.Event,
    gate: asyncio.Semaphore,
    *,
    verify_first: bool,
) -> None:
    # A fleet that connects all at once (a server restart) is spread by the agents'
    # backoff; here a gate keeps the handshakes in flight to a few dozen.
    await gate.acquire()
    agent.ws = ws = await connect(
        url,
        ssl=agent.context,
        server_hostname="localhost",
        compression=None,
        max_size=1 << 23,
        open_timeout=_TIMEOUT,
    )
    hello = Hello(
        agent_version="0.1.0",
        hostname="bench",
        os="linux",
        os_version="bench",
        capabilities=["actions"],
    )
    await ws.send(encode_message(hello))
    async for frame in ws:
        if not isinstance(frame, bytes):
            continue
        message = decode_server_message(frame, 1 << 23)
        if isinstance(message, Welcome):
            continue
        if isinstance(message, OperatorsUpdate):
            if agent.keyring is None:
                if keyring_fingerprint(message.chain[0].body) != fingerprint:
                    raise BenchmarkFailed("the server sent a keyring with another fingerprint")
                agent.keyring = decode_keyring(message.chain[-1].body)
                connected.set()
                gate.release()
        elif isinstance(message, ActionRequest):
            received = now_us()
            nonce = decode_command_body(message.command.body).nonce
            agent.received[nonce] = received
            if verify_first:
                _verify(agent, message, received)
            await ws.send(encode_message(ActionResult(nonce=nonce, status="done")))
            if not verify_first:
                agent.unverified.append((message, received))


def _verify(agent: _Agent, message: ActionRequest, received: int) -> None:
    """What the agent checks before it acts (``verify_command``)."""
    if agent.keyring is None:
        raise BenchmarkFailed("a command arrived before the keyring")
    try:
        verify_command(
            message.command,
            keyring=agent.keyring,
            device_id=agent.device_id,
            proof=message.device_proof,
            now_us=received,
        )
    except Refused as exc:
        agent.refused.append(exc.reason)


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return f"p50 {at(50):7.1f}  p95 {at(95):7.1f}  p99 {at(99):7.1f}  max {ordered[-1]:7.1f} ms"


@dataclass
class _Figures:
    ping: list[float] = field(default_factory=list)
    single_receipt: list[float] = field(default_factory=list)
    single_stored: list[float] = field(default_factory=list)
    fleet_receipt: list[float] = field(default_factory=list)
    fleet_stored: list[float] = field(default_factory=list)
    refused: int = 0
    verified: int = 0


async def _click(
    engine: sa.Engine,
    device_ids: list[str],
    signers: list[ed25519.Ed25519PrivateKey],
) -> tuple[str, int]:
    """Create and sign a lock as the console does; returns the nonce and the time it
    became ready."""

    def work() -> tuple[str, int]:
        nonce = service.create_command(
            engine, LockParams(), device_ids, requested_by="bench", reason="bench"
        )
        view = service.command_view(engine, nonce)
        for private in signers[: view.needed_signers]:
            state = service.add_command_signature(
                engine, nonce, sign_ed25519(private, view.digest), "bench"
            )
        if state != "ready":
            raise BenchmarkFailed(f"command {nonce} is {state} after its signatures")
        return nonce, now_us()

    return await asyncio.to_thread(work)


def _finished(engine: sa.Engine, nonce: str) -> dict[str, str]:
    """State of each target that has its result (a light query: two columns)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(action_targets.c.device_id, action_targets.c.state).where(
                action_targets.c.nonce == nonce,
                action_targets.c.state.not_in(("pending", "sent")),
            )
        )
        return {str(d): str(s) for d, s in rows}


async def _wait_stored(engine: sa.Engine, nonce: str, count: int) -> dict[str, int]:
    """When each target's result became visible in the store (committed), polled
    every 10 ms: the time each device id was first seen finished."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(_finished, engine, nonce)
        stamp = now_us()
        for device_id, state in found.items():
            if state != "done":
                raise BenchmarkFailed(f"a target of {nonce} ended {state}")
            seen.setdefault(device_id, stamp)
        if len(seen) == count:
            return seen
        await asyncio.sleep(0.01)
    raise BenchmarkFailed(f"the results of {nonce} were not all stored within {_TIMEOUT:.0f} s")


async def _measure(
    server: BenchServer, agents: list[_Agent], clicks: int, rounds: int, *, verify_first: bool
) -> _Figures:
    engine = server.engine
    alice, alice_key = _operator("alice")
    bob, bob_key = _operator("bob")
    fingerprint = service.init_keyring(engine, [alice_key, bob_key], 1, 10, "bench")
    figures = _Figures()
    url = f"wss://localhost:{server.agent_port}/v1/agent"
    events = [asyncio.Event() for _ in agents]
    gate = asyncio.Semaphore(32)
    tasks = [
        asyncio.create_task(_agent_loop(a, url, fingerprint, e, gate, verify_first=verify_first))
        for a, e in zip(agents, events, strict=True)
    ]
    try:
        started = time.monotonic()
        while not all(e.is_set() for e in events):
            failed = [t for t in tasks if t.done()]
            if failed:
                problem = failed[0].exception() if not failed[0].cancelled() else "cancelled"
                raise BenchmarkFailed(f"an agent stopped: {problem!r}")
            if time.monotonic() - started > _TIMEOUT * 2:
                raise BenchmarkFailed("the agents did not all connect and get the keyring")
            await asyncio.sleep(0.05)
        print(
            f"  {len(agents)} agents connected and pinned the keyring in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        # Baseline: WebSocket ping round trips on the same connections.
        for _ in range(3):
            waiters = [await a.ws.ping() for a in agents if a.ws is not None]
            figures.ping += [1000 * float(await w) for w in waiters]

        # Single-device commands, one click after another.
        for i in range(clicks):
            agent = agents[i % len(agents)]
            # A pause of random length: clicks do not keep in step with the poll.
            await asyncio.sleep(random.uniform(0.0, 0.25))  # noqa: S311 - timing jitter
            nonce, ready = await _click(engine, [agent.device_id], [alice])
            stored = await _wait_stored(engine, nonce, 1)
            figures.single_receipt.append((agent.received[nonce] - ready) / 1000)
            figures.single_stored.append((stored[agent.device_id] - ready) / 1000)
        # Fleet commands: every agent, two operators.
        everyone = [a.device_id for a in agents]
        for _ in range(rounds):
            await asyncio.sleep(random.uniform(0.0, 0.25))  # noqa: S311 - timing jitter
            nonce, ready = await _click(engine, everyone, [alice, bob])
            stored = await _wait_stored(engine, nonce, len(everyone))
            figures.fleet_receipt += [(a.received[nonce] - ready) / 1000 for a in agents]
            figures.fleet_stored += [(t - ready) / 1000 for t in stored.values()]
        for a in agents:
            for message, received in a.unverified:
                _verify(a, message, received)
        figures.verified = sum(len(a.received) for a in agents)
        figures.refused = sum(len(a.refused) for a in agents)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for a in agents:
            if a.ws is not None:
                await a.ws.close()
    return figures


def main(args: argparse.Namespace) -> int:
    if args.agents < 1 or args.clicks < 1 or args.fleet_rounds < 0:
        print("sekimori bench actions: --agents and --clicks must be positive", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="sekimori-bench-") as tmp:
            workdir = Path(tmp)
            with running_server(workdir, args.database_url) as server:
                (workdir / "agents").mkdir()
                agents = _identities(server, args.agents, workdir / "agents")
                figures = asyncio.run(
                    _measure(
                        server,
                        agents,
                        args.clicks,
                        args.fleet_rounds,
                        verify_first=args.verify_first,
                    )
                )
    except BenchmarkFailed as exc:
        print(f"sekimori bench actions: failed: {exc}", file=sys.stderr)
        return 1
    worst = max(
        sorted(v)[min(len(v) - 1, round(0.99 * (len(v) - 1)))]
        for v in (figures.single_stored, figures.fleet_stored or figures.single_stored)
    )
    print(
        f"\nsekimori bench actions: {args.agents} connected agents (simulated, in one "
        f"process; each command verified like the agent does, "
        f"{'before answering' if args.verify_first else 'after answering at once'}), "
        f"store {'PostgreSQL' if args.database_url else 'SQLite'}\n"
        f"  baseline, WebSocket ping round trip:      {_percentiles(figures.ping)}\n"
        f"  {args.clicks} single-device clicks, to receipt:  "
        f"{_percentiles(figures.single_receipt)}\n"
        f"  {'':>{len(str(args.clicks))}} single-device clicks, result stored: "
        f"{_percentiles(figures.single_stored)}",
        flush=True,
    )
    if figures.fleet_receipt:
        print(
            f"  {args.fleet_rounds} fleet commands x {args.agents}, to receipt:   "
            f"{_percentiles(figures.fleet_receipt)}\n"
            f"  {args.fleet_rounds} fleet commands x {args.agents}, result stored:"
            f" {_percentiles(figures.fleet_stored)}",
            flush=True,
        )
    print(
        f"  commands verified by the agents: {figures.verified}, refused: {figures.refused}\n"
        f"  goal p99 <= {GOAL_P99_MS:g} ms to result stored: "
        f"{'met' if worst <= GOAL_P99_MS else 'NOT met'} (worst p99 {worst:.0f} ms)",
        flush=True,
    )
    return 0 if figures.refused == 0 else 1
