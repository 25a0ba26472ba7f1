"""Tile images: RGBA pixels → PNG, WebP or JPEG bytes (Pillow)."""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

from satgen_geo._validate import check_choice
from satgen_geo.tiles.xyz import TILE_PX

#: Tile formats by file extension, with their media types.
MEDIA_TYPES = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}
#: JPEG and lossy WebP quality.
QUALITY = 90


def encode_tile(rgba: np.ndarray | None, fmt: str) -> bytes:
    """A ``(4, H, W)`` uint8 RGBA tile as ``fmt`` bytes; ``None`` is the empty tile (transparent, black in JPEG).

    PNG is lossless, RGB when the tile is opaque; WebP keeps transparency (lossless alpha);
    JPEG has none, so pixels outside the area come out black.
    """
    check_choice(fmt, "tile", "tile format", tuple(MEDIA_TYPES))
    if rgba is None:
        return _empty(fmt)
    alpha = rgba[3]
    opaque = bool(alpha.min() == 255)
    if fmt == "jpg" or opaque:
        rgb = rgba[:3] if opaque else (rgba[:3].astype(np.uint16) * alpha // 255).astype(np.uint8)
        image = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)), "RGB")
    else:
        image = Image.fromarray(np.ascontiguousarray(rgba.transpose(1, 2, 0)), "RGBA")
    return _save(image, fmt)


@lru_cache(maxsize=len(MEDIA_TYPES))
def _empty(fmt: str) -> bytes:
    return encode_tile(np.zeros((4, TILE_PX, TILE_PX), dtype=np.uint8), fmt)


def _save(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", compress_level=6)
    elif fmt == "webp":
        image.save(buffer, "WEBP", quality=QUALITY, method=4)
    else:
        image.save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def decode_tile(data: bytes) -> np.ndarray:
    """Tile bytes → ``(4, H, W)`` uint8 RGBA (opaque alpha for RGB images)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA")).transpose(2, 0, 1).copy()
