"""Child process of ``sekimori bench ingest``: drain pre-filled agent outboxes.

Runs one real :class:`~sekimori.agent.channel.ChannelClient` per state directory,
all in one asyncio loop, and times from their start until every outbox is empty.
An event leaves an outbox only on the server's ack, and the server acks only after
commit, so "all outboxes empty" means "every event committed".

It is a separate process so that, on a 2-core machine, the simulated agents get one
core and the server the other (as when agents run on their own PCs).

Usage: ``python -m sekimori.bench._stream STATE_DIR...``; prints one JSON object
(``StreamResult``) on stdout, exits 1 with a reason on stderr on failure.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import msgspec

from sekimori.agent.channel import ChannelClient, ChannelEnd
from sekimori.agent.host import host_info
from sekimori.agent.identity import Identity
from sekimori.agent.outbox import Outbox
from sekimori.settings import AgentSettings

__all__ = ["StreamResult", "main"]

# Long enough for 10x the default workload on a slow machine; a stuck stream fails.
_TIMEOUT_SECONDS = 600.0
# How often the outboxes are checked: small beside a multi-second run.
_POLL_SECONDS = 0.005


class StreamResult(msgspec.Struct, forbid_unknown_fields=True):
    events: int  # in the outboxes at the start
    seconds: float  # start of the clients -> every outbox empty
    connected_seconds: float  # start of the clients -> every client connected
    cpu_seconds: float  # this process's CPU time over ``seconds``


class StreamFailed(Exception):
    pass


def _pending(outboxes: list[Outbox]) -> int:
    return sum(o.stats().events for o in outboxes)


async def _drain(state_dirs: list[Path]) -> StreamResult:
    settings = AgentSettings()
    host = host_info()
    identities = [Identity.load(d) for d in state_dirs]
    outboxes = [Outbox(d / "outbox.db", max_bytes=settings.outbox_max_bytes) for d in state_dirs]
    stop = asyncio.Event()
    runs: list[asyncio.Task[ChannelEnd]] = []
    try:
        initial = _pending(outboxes)
        cpu_start = time.process_time()
        start = time.perf_counter()
        clients = [
            ChannelClient(i, o, settings, host) for i, o in zip(identities, outboxes, strict=True)
        ]
        runs = [asyncio.create_task(c.run(stop)) for c in clients]
        connected_at: float | None = None
        deadline = start + _TIMEOUT_SECONDS
        while True:
            remaining = _pending(outboxes)
            now = time.perf_counter()
            if connected_at is None and all(c.connected.is_set() for c in clients):
                connected_at = now
            if remaining == 0:
                break
            for client, run in zip(clients, runs, strict=True):
                if run.done():
                    why = run.exception() or client.refusal or run.result()
                    raise StreamFailed(f"an agent's channel ended early: {why!r}")
            if now > deadline:
                raise StreamFailed(
                    f"{remaining} of {initial} events still queued after {_TIMEOUT_SECONDS:.0f} s"
                )
            await asyncio.sleep(_POLL_SECONDS)
        elapsed = now - start
        cpu = time.process_time() - cpu_start
        stop.set()
        ends = await asyncio.gather(*runs)
        if any(end is not ChannelEnd.STOPPED for end in ends):
            raise StreamFailed(f"channels ended with {ends}")
        return StreamResult(
            events=initial,
            seconds=elapsed,
            connected_seconds=(connected_at if connected_at is not None else now) - start,
            cpu_seconds=cpu,
        )
    finally:
        # Stop every channel before closing the outboxes they read.
        stop.set()
        await asyncio.gather(*runs, return_exceptions=True)
        for outbox in outboxes:
            outbox.close()


def main(argv: list[str]) -> int:
    # Reconnect warnings would matter (they cost time): keep them, drop INFO.
    logging.basicConfig(level=logging.WARNING, format="bench agents: %(name)s: %(message)s")
    if not argv:
        print("usage: python -m sekimori.bench._stream STATE_DIR...", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_drain([Path(a) for a in argv]))
    except StreamFailed as exc:
        print(f"bench agents: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
