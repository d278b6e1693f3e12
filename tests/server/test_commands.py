"""Commands down the channel, with the server in this process (to reach its channel
object) and a real agent process on the other end."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sekimori.agent.enroll import enroll
from sekimori.server.app import SekimoriServer
from sekimori.server.store.tokens import create_token
from sekimori.settings import load_settings
from tests.processes import AgentProcess, free_port, wait_for

T = TypeVar("T")


class InProcessServer:
    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.agent_port = free_port()
        settings = load_settings(
            environ={
                "SEKIMORI_DATA_DIR": str(tmp_path / "server"),
                "SEKIMORI_SERVER__DATABASE_URL": database_url,
                "SEKIMORI_SERVER__AGENT_HOST": "127.0.0.1",
                "SEKIMORI_SERVER__AGENT_PORT": str(self.agent_port),
                "SEKIMORI_SERVER__CONSOLE_PORT": str(free_port()),
                "SEKIMORI_SERVER__HEARTBEAT_SECONDS": "1",
            }
        )
        self.server = SekimoriServer(settings)
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.run(self.stop_event))

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        wait_for(self._listening, 30, "in-process server listening")
        return self

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.agent_port), timeout=1).close()
        except OSError:
            return False
        return True

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


@pytest.fixture
def inproc(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    with InProcessServer(tmp_path, database_url) as server:
        yield server


def test_status_command_round_trip(inproc: InProcessServer, tmp_path: Path) -> None:
    pki = inproc.server.pki
    token = create_token(inproc.server.engine, group="default", ttl_seconds=60, created_by="t")
    identity = enroll(
        tmp_path / "pc", f"wss://localhost:{inproc.agent_port}", token.token, pki.ca_fingerprint()
    )
    agent = AgentProcess(tmp_path / "pc").start()
    try:
        channel = inproc.server.channel
        wait_for(lambda: identity.device_id in channel.connected_devices, 20, "agent connected")
        result = inproc.call(channel.request_status(identity.device_id))
        assert result.ok is True
        detail = result.detail
        assert detail["version"] == "0.1.0"
        assert isinstance(detail["outbox_events"], int)
        with pytest.raises(LookupError, match="not connected"):
            inproc.call(channel.request_status("no-such-device"))
    finally:
        assert agent.stop() == 0
