"""Painted masks (the SatGen-CV editor's PNGs): header probe, decoding, colour classification.

The image header is read with Pillow's format plugins directly, so its size is checked
against the server's own pixel limit (``max_output_pixels``) instead of Pillow's
process-wide decompression-bomb limit, which this module never changes.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFile

from satgen_geo.api.errors import UnsupportedUploadError

#: Image formats accepted by ``POST /generate`` (Pillow format names).
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")
#: Any painted-mask pixel value at least this bright in its dominant channel…
DOMINANT_MIN = 128
#: …and this much brighter than both other channels is a road (red) or building (green).
DOMINANT_MARGIN = 64
_NOT_AN_IMAGE = (
    "the upload is not a PNG, JPEG or TIFF image; send the painted mask as PNG "
    "(a mask GeoTIFF goes to /generate/geotiff)"
)
#: What Pillow's plugins raise on a header they cannot parse.
_HEADER_ERRORS = (SyntaxError, IndexError, TypeError, ValueError, OSError, EOFError)


def open_image(data: bytes) -> ImageFile.ImageFile:
    """Open an uploaded image lazily (header only) as ``Image.open`` does, without its bomb check.

    The caller checks the size against the server's limit before decoding anything.

    Raises
    ------
    UnsupportedUploadError
        If no accepted format's plugin recognises the bytes.
    """
    Image.init()  # registers the plugins; a no-op after the first call
    prefix = data[:16]
    for name in IMAGE_FORMATS:
        factory, accept = Image.OPEN[name]
        accepted = accept is None or accept(prefix)
        if not accepted or isinstance(accepted, str):  # a string is Pillow's "recognised but unsupported"
            continue
        try:
            return factory(io.BytesIO(data), "")
        except _HEADER_ERRORS:
            continue
    raise UnsupportedUploadError(_NOT_AN_IMAGE, param="upload")


def probe_image(data: bytes) -> tuple[int, int]:
    """Width and height from an uploaded image's header (no pixel is decoded)."""
    with open_image(data) as image:
        return image.size


def decode_painted(data: bytes) -> np.ndarray:
    """An uploaded painted image as the engine's ``(2, H, W)`` mask (see :func:`classify_painted`)."""
    try:
        with open_image(data) as image:
            image.load()
            return classify_painted(image)
    except (OSError, SyntaxError, ValueError) as err:
        raise UnsupportedUploadError(f"the image could not be decoded ({err}); send a valid PNG", param="upload") from None


def classify_painted(image: Image.Image) -> np.ndarray:
    """A painted RGB(A) mask as the engine's ``(2, H, W)`` uint8 0/255 mask (roads, buildings).

    A pixel is a road when red dominates (R ≥ 128 and R − max(G, B) ≥ 64, so antialiased
    near-red brush edges count), a building when green dominates by the same rule, else
    background. Fully transparent pixels are background. Palette and grey images are
    converted to RGB(A) first.
    """
    if image.mode not in ("RGB", "RGBA"):
        transparent = image.mode in ("LA", "La", "PA", "RGBa") or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    pixels = np.asarray(image)
    r, g, b = (pixels[..., i].astype(np.int16) for i in range(3))
    roads = (r >= DOMINANT_MIN) & (r - np.maximum(g, b) >= DOMINANT_MARGIN)
    buildings = (g >= DOMINANT_MIN) & (g - np.maximum(r, b) >= DOMINANT_MARGIN)
    if pixels.shape[-1] == 4:
        opaque = pixels[..., 3] > 0
        roads &= opaque
        buildings &= opaque
    return np.stack([roads, buildings]).astype(np.uint8) * 255
