"""Downscaling and encoding a captured frame (Pillow).

The choice of format and size is measured in ``docs/benchmarks.md`` (``sekimori bench
screens``): on a full-HD office screen JPEG is an order of magnitude cheaper to
encode than WebP.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from sekimori.agent.screens.capture import RawFrame

__all__ = ["EncodedFrame", "ImageFormat", "encode", "to_image"]

ImageFormat = Literal["jpeg", "webp"]


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """An encoded picture and its size in pixels (after scaling)."""

    data: bytes
    width: int
    height: int
    format: ImageFormat


def to_image(raw: RawFrame) -> Image.Image:
    """The frame as an RGB Pillow image (no copy of the pixels until Pillow needs one)."""
    return Image.frombuffer("RGB", (raw.width, raw.height), raw.bgra, "raw", "BGRX", 0, 1)


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode(raw: RawFrame, *, scale: float, format: ImageFormat, quality: int) -> EncodedFrame:
    """Scale ``raw`` by ``scale`` (0 < scale <= 1) and encode it.

    ``quality`` 1-100 (JPEG: libjpeg's quality; WebP: lossy quality). Raises
    ValueError for values out of range."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], not {scale}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1-100, not {quality}")
    image = to_image(raw)
    size = scaled_size(raw.width, raw.height, scale)
    if size != image.size:
        factor = round(1 / scale)
        if scaled_size(raw.width, raw.height, 1 / factor) == size:
            image = image.reduce(factor)  # exact integer factor: block average, fastest
        else:
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    if format == "jpeg":
        image.save(out, "JPEG", quality=quality, optimize=False, subsampling="4:2:0")
    elif format == "webp":
        # method 0: fastest encoder effort; higher methods cost several times more.
        image.save(out, "WEBP", quality=quality, method=0)
    else:
        raise ValueError(f"unknown format {format!r}")
    return EncodedFrame(data=out.getvalue(), width=image.width, height=image.height, format=format)
