"""Screen frames for tests: real pictures made with Pillow, sent as ``screen.frame``
events over a real agent connection (the device certificate of an enrolled PC)."""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass

import msgspec
from PIL import Image, ImageDraw
from websockets.asyncio.client import connect

from sekimori.agent.identity import Identity, client_ssl_context
from sekimori.protocol import (
    Ack,
    Event,
    EventBatch,
    Hello,
    Welcome,
    decode_server_message,
    encode_batch_body,
    encode_message,
)
from sekimori.protocol.events.screen import ScreenFrame
from tests.processes import ServerProcess

__all__ = ["FrameEvent", "picture", "screen_frame", "send_frames"]

HELLO = Hello(agent_version="0.1.0", hostname="pc", os="linux", os_version="test")


def picture(text: str, fmt: str = "png", size: tuple[int, int] = (320, 200)) -> bytes:
    """A small, distinct picture: coloured by ``text``, with ``text`` drawn on it."""
    digest = hashlib.sha256(text.encode()).digest()
    image = Image.new("RGB", size, (digest[0], digest[1], digest[2]))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, size[0] - 10, 40), fill=(255, 255, 255))
    draw.text((14, 16), text, fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, format={"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt])
    return out.getvalue()


def screen_frame(
    image: bytes,
    *,
    fmt: str = "png",
    title: str | None = "report.xlsx - Excel",
    application: str | None = "excel",
    monitor: int = 0,
    sha256: str | None = None,
) -> ScreenFrame:
    with Image.open(io.BytesIO(image)) as im:
        width, height = im.size
    return ScreenFrame(
        monitor=monitor,
        width=width,
        height=height,
        screen_width=width * 4,
        screen_height=height * 4,
        format=fmt,  # type: ignore[arg-type]
        image=image,
        sha256=sha256 or hashlib.sha256(image).hexdigest(),
        trigger="window_change",
        title=title,
        application=application,
        user=None,
    )


@dataclass(frozen=True)
class FrameEvent:
    seq: int
    time_us: int
    os_user: str | None
    frame: ScreenFrame


def send_frames(server: ServerProcess, identity: Identity, events: list[FrameEvent]) -> Ack:
    """Send the frames as one batch on a real agent connection; the server's Ack."""

    async def go() -> Ack:
        ws = await connect(
            f"{server.url}/v1/agent",
            ssl=client_ssl_context(identity.ca_path, identity),
            compression=None,
            max_size=1 << 24,
        )
        try:
            await ws.send(encode_message(HELLO))
            welcome = decode_server_message(await asyncio.wait_for(ws.recv(), 10), 1 << 22)  # type: ignore[arg-type]
            assert isinstance(welcome, Welcome)
            batch = [
                Event(
                    e.seq,
                    e.time_us,
                    "screen.frame",
                    e.os_user,
                    msgspec.Raw(msgspec.msgpack.encode(e.frame)),
                )
                for e in events
            ]
            compression, body = encode_batch_body(batch)
            await ws.send(
                encode_message(
                    EventBatch(
                        first_seq=batch[0].seq,
                        last_seq=batch[-1].seq,
                        count=len(batch),
                        compression=compression,
                        body=body,
                    )
                )
            )
            while True:
                reply = decode_server_message(await asyncio.wait_for(ws.recv(), 20), 1 << 22)  # type: ignore[arg-type]
                if isinstance(reply, Ack):
                    return reply
        finally:
            await ws.close()

    return asyncio.run(go())
