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
    """The frame as an RGB Pillow image."""
    return Image.frombuffer("RGB", (raw.width, raw.height), raw.bgra, "raw", "BGRX", 0, 1)


def _swap_red_blue(image: Image.Image) -> Image.Image:
    blue, green, red, _ = image.split()
    return Image.merge("RGB", (red, green, blue))


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
    # Scaling works on the captured buffer in place (read as RGBX: no full-size
    # conversion); only the smaller result has its channels put in order.
    image = Image.frombuffer("RGBX", (raw.width, raw.height), raw.bgra, "raw", "RGBX", 0, 1)
    size = scaled_size(raw.width, raw.height, scale)
    if size != image.size:
        # Block averages by the whole part of the factor (fast), then a bilinear
        # resize of the much smaller picture for the rest.
        factor = int(1 / scale + 1e-9)
        if factor > 1:
            image = image.reduce(factor)
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
    image = _swap_red_blue(image)
    out = io.BytesIO()
    if format == "jpeg":
        image.save(out, "JPEG", quality=quality, optimize=False, subsampling="4:2:0")
    elif format == "webp":
        # method 0: fastest encoder effort; higher methods cost several times more.
        image.save(out, "WEBP", quality=quality, method=0)
    else:
        raise ValueError(f"unknown format {format!r}")
    return EncodedFrame(data=out.getvalue(), width=image.width, height=image.height, format=format)
