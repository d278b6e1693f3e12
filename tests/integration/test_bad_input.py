"""Bad input on the agent endpoint: each gets a clear error and a closed connection,
never a traceback, and nothing stored is corrupted."""

from __future__ import annotations

import asyncio
import http.client
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from sekimori.agent.enroll import _make_key_and_csr
from sekimori.agent.identity import Identity, client_ssl_context, write_private
from sekimori.protocol import (
    Ack,
    ErrorMessage,
    Event,
    EventBatch,
    Hello,
    Welcome,
    decode_server_message,
    encode_batch_body,
    encode_message,
)
from sekimori.protocol.events import AgentLog
from sekimori.server.pki import PKI
from tests.processes import ServerProcess

FRAME_LIMIT = 64 * 1024
INFLATE_LIMIT = 1024 * 1024
HELLO = Hello(agent_version="0.1.0", hostname="pc", os="linux", os_version="test")


@pytest.fixture
def strict_server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path / "server",
        database_url,
        max_frame_bytes=str(FRAME_LIMIT),
        max_inflated_batch_bytes=str(INFLATE_LIMIT),
    ).start()
    try:
        yield proc
    finally:
        proc.dispose()


def _log_event(seq: int, text: str = "hello") -> Event:
    payload = msgspec.msgpack.encode(AgentLog(level="info", source="test", message=text))
    return Event(seq, 1_700_000_000_000_000 + seq, "agent.log", "alice", msgspec.Raw(payload))


def _batch(events: list[Event]) -> bytes:
    compression, body = encode_batch_body(events)
    return encode_message(
        EventBatch(
            first_seq=events[0].seq,
            last_seq=events[-1].seq,
            count=len(events),
            compression=compression,
            body=body,
        )
    )


async def _recv(ws: ClientConnection) -> Any:
    frame = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(frame, bytes)
    return decode_server_message(frame, 1 << 22)


class Peer:
    """A hand-driven agent connection with the real device certificate."""

    def __init__(self, server: ServerProcess, identity: Identity | None) -> None:
        self.server = server
        self.identity = identity

    async def open(self, hello: bool = True) -> ClientConnection:
        ca = self.identity.ca_path if self.identity else self.server.data_dir / "pki" / "ca.crt"
        ws = await connect(
            f"{self.server.url}/v1/agent",
            ssl=client_ssl_context(ca, self.identity),
            compression=None,
            max_size=1 << 22,
        )
        if hello:
            await ws.send(encode_message(HELLO))
            assert isinstance(await _recv(ws), Welcome)
        return ws

    async def refused(self, frame: bytes | str, hello: bool = True) -> tuple[ErrorMessage, int]:
        """Send one bad frame; return the error message and the close code."""
        ws = await self.open(hello)
        await ws.send(frame)
        reply = await _recv(ws)
        assert isinstance(reply, ErrorMessage), reply
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code is not None
        return reply, ws.close_code


def test_unauthenticated_connection_can_only_enroll(strict_server: ServerProcess) -> None:
    peer = Peer(strict_server, None)
    error, code = asyncio.run(peer.refused(encode_message(HELLO), hello=False))
    assert error.code == "unauthenticated"
    assert "only enrollment" in error.message
    assert code == 4401
    # Plain HTTP on the agent port serves only the (public) CA certificate.
    ca = strict_server.data_dir / "pki" / "ca.crt"
    conn = http.client.HTTPSConnection(
        "localhost", strict_server.agent_port, context=client_ssl_context(ca)
    )
    for path, status in (("/metrics", 404), ("/healthz", 404), ("/v1/ca.pem", 200)):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == status, path
    conn.close()


def test_malformed_frames_get_clear_errors_and_store_nothing(
    strict_server: ServerProcess, tmp_path: Path
) -> None:
    identity = strict_server.enroll(tmp_path / "pc")
    peer = Peer(strict_server, identity)

    async def scenario() -> None:
        cases: list[tuple[bytes | str, str, str]] = [
            (b"\xc1\x00garbage", "invalid_message", "malformed frame"),
            ("a text frame", "invalid_message", "text frames"),
            (
                msgspec.msgpack.encode({"v": 99, "t": "batch"}),
                "unsupported_version",
                "this peer speaks 1",
            ),
            (
                msgspec.msgpack.encode(
                    {
                        "v": 1,
                        "t": "batch",
                        "first_seq": "one",
                        "last_seq": 1,
                        "count": 1,
                        "compression": "none",
                        "body": b"",
                    }
                ),
                "invalid_message",
                "$.first_seq",
            ),
            (msgspec.msgpack.encode({"v": 1, "t": "teleport"}), "invalid_message", "teleport"),
            (encode_message(HELLO), "invalid_message", "unexpected Hello"),
        ]
        for frame, code, text in cases:
            error, close = await peer.refused(frame)
            assert (error.code, close) == (code, 4400), (frame, error)
            assert text in error.message, (text, error.message)
            assert "Traceback" not in error.message

    asyncio.run(scenario())
    assert strict_server.scalar("SELECT count(*) FROM events WHERE kind = 'agent.log'") == 0
    log = strict_server.log()
    assert "refused" in log and "invalid_message" in log
    assert "Traceback" not in log


def test_bad_batches_are_refused_without_moving_the_high_water_mark(
    strict_server: ServerProcess, tmp_path: Path
) -> None:
    identity = strict_server.enroll(tmp_path / "pc")
    peer = Peer(strict_server, identity)

    async def scenario() -> None:
        # From the future: would make every later real event look like a duplicate,
        # whether the far seq starts the batch or hides at its end.
        error, _ = await peer.refused(_batch([_log_event(10**12)]))
        assert error.code == "sequence_from_future"
        error, _ = await peer.refused(_batch([_log_event(1), _log_event(10**12)]))
        assert error.code == "sequence_from_future"
        error, _ = await peer.refused(_batch([_log_event(1), _log_event(2**63)]))
        assert "out of range" in error.message
        # A zlib bomb: 8 MiB of zeros in a few KiB, over the 1 MiB inflate limit.
        bomb = zlib.compress(b"\x00" * (8 * 1024 * 1024), 9)
        error, _ = await peer.refused(
            encode_message(
                EventBatch(first_seq=1, last_seq=1, count=1, compression="zlib", body=bomb)
            )
        )
        assert error.code == "too_large"
        # Declared count and contents disagree; sequence numbers out of order.
        events = [_log_event(1), _log_event(2)]
        _, body = encode_batch_body(events)
        error, _ = await peer.refused(
            encode_message(
                EventBatch(first_seq=1, last_seq=2, count=3, compression="zlib", body=body)
            )
        )
        assert "declares 3 events but holds 2" in error.message
        _, body = encode_batch_body([_log_event(2), _log_event(1)])
        error, _ = await peer.refused(
            encode_message(
                EventBatch(first_seq=2, last_seq=1, count=2, compression="zlib", body=body)
            )
        )
        assert error.code == "invalid_message"
        # A frame over the limit is cut off by the WebSocket layer (1009: too big).
        ws = await peer.open()
        await ws.send(b"\x00" * (FRAME_LIMIT + 1))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1009

    asyncio.run(scenario())
    assert strict_server.scalar("SELECT count(*) FROM events WHERE kind = 'agent.log'") == 0
    assert (
        strict_server.scalar("SELECT acked_seq FROM devices WHERE id = :id", id=identity.device_id)
        == 0
    )


def test_invalid_events_are_quarantined_and_replays_are_not_stored_twice(
    strict_server: ServerProcess, tmp_path: Path
) -> None:
    identity = strict_server.enroll(tmp_path / "pc")
    peer = Peer(strict_server, identity)
    wrong_type = msgspec.msgpack.encode({"level": "info", "source": "x", "message": 42})
    good = _log_event(5, "fifth")
    events = [
        _log_event(1, "first"),
        Event(2, 1, "agent.teleported", None, msgspec.Raw(msgspec.msgpack.encode({}))),
        Event(3, 1, "agent.log", None, msgspec.Raw(wrong_type)),
        _log_event(4, "fourth"),
        # A time the store cannot hold: quarantined, not a stuck stream.
        Event(5, 2**63, "agent.log", None, good.payload),
    ]

    async def scenario() -> tuple[Any, Any]:
        ws = await peer.open()
        await ws.send(_batch(events))
        first = await _recv(ws)
        await ws.send(_batch(events))  # the same batch again: a retry after a lost ack
        second = await _recv(ws)
        await ws.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert isinstance(first, Ack)
    assert (first.through_seq, first.stored, first.duplicates) == (5, 2, 0)
    assert [(r.seq, r.reason.split(" ")[0]) for r in first.rejected] == [
        (2, "unknown"),
        (3, "invalid"),
        (5, "time_us"),
    ]
    assert "$.message" in first.rejected[1].reason
    assert isinstance(second, Ack)
    assert (second.through_seq, second.stored) == (5, 0)
    assert strict_server.scalar("SELECT count(*) FROM events WHERE kind = 'agent.log'") == 2
    assert strict_server.scalar("SELECT count(*) FROM quarantine") == 3
    assert (
        strict_server.scalar("SELECT acked_seq FROM devices WHERE id = :id", id=identity.device_id)
        == 5
    )


def test_hello_with_control_characters_is_refused(
    strict_server: ServerProcess, tmp_path: Path
) -> None:
    identity = strict_server.enroll(tmp_path / "pc")
    bad = Hello(agent_version="0.1.0", hostname="pc\x1b[31m", os="linux", os_version="x")
    error, code = asyncio.run(Peer(strict_server, identity).refused(encode_message(bad), False))
    assert (error.code, code) == ("invalid_message", 4400)
    assert "hostname" in error.message


def test_certificate_from_another_deployment_is_refused(
    strict_server: ServerProcess, tmp_path: Path
) -> None:
    other = PKI(tmp_path / "other-pki")
    other.initialize(["localhost"])
    key_pem, csr_pem = _make_key_and_csr()
    cert_pem, _ = other.sign_device_csr(csr_pem, "00000000-0000-4000-8000-000000000000")
    state = tmp_path / "forged"
    state.mkdir()
    write_private(state / "device.key", key_pem)
    (state / "device.crt").write_text(cert_pem)
    (state / "ca.crt").write_bytes((strict_server.data_dir / "pki" / "ca.crt").read_bytes())
    forged = Identity(state, "00000000-0000-4000-8000-000000000000", strict_server.url, "0" * 64)

    async def scenario() -> None:
        ws = await Peer(strict_server, forged).open(hello=False)
        await ws.send(encode_message(HELLO))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)

    # The TLS layer rejects the certificate (TLS 1.3 reports it after the client's
    # handshake completes, so the client sees its first read fail, or the connect).
    with pytest.raises((ConnectionClosed, InvalidHandshake, OSError)):
        asyncio.run(scenario())
    assert strict_server.scalar("SELECT count(*) FROM devices") == 0
