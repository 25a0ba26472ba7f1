"""Every request is bounded before work starts: body size, upload, output pixels, window count.

Checked in this order, each before the next costs anything: the body while it streams in
(:class:`BodyLimit`), the upload (:func:`read_upload`), the image or raster header
(:func:`probe_geotiff`, :func:`satgen_geo.api.painted.probe_image`), then the output's
pixels and network windows (:func:`check_output`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rasterio
from fastapi import UploadFile
from rasterio.errors import RasterioError

from satgen_geo.api.errors import (
    EmptyUploadError,
    UnsupportedUploadError,
    UploadTooLargeError,
    error_response,
)
from satgen_geo.engine import RenderConfig, check_work
from satgen_geo.errors import LimitError
from satgen_geo.model.spec import ModelSpec

#: Room for multipart boundaries and headers on top of the upload limit.
MULTIPART_SLACK = 64 * 1024
#: An oversize body up to this size is read and dropped before the 413 (see :class:`BodyLimit`).
DRAIN_BYTES = 64 * 1024 * 1024
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class BodyLimit:
    """ASGI middleware: refuse bodies over ``upload_bytes`` (by Content-Length, or while streaming).

    Before answering 413 the rest of the body is read and dropped (up to :data:`DRAIN_BYTES`):
    a server that closes a connection with unread data makes the client see a reset
    instead of the 413.
    """

    def __init__(self, app: Any, upload_bytes: int) -> None:
        self.app, self.upload_bytes = app, upload_bytes
        self.max_bytes = upload_bytes + MULTIPART_SLACK

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= DRAIN_BYTES:
                await _drain(receive, DRAIN_BYTES)
            message = too_large_message(int(declared), self.upload_bytes)
            await error_response(413, message, "upload", {"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, DRAIN_BYTES)
                    raise UploadTooLargeError(too_large_message(None, self.upload_bytes))
            return message

        await self.app(scope, limited_receive, send)


async def _drain(receive: Callable, cap: int) -> None:
    """Read and drop the rest of a request body (at most ``cap`` bytes)."""
    drained = 0
    while drained <= cap:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def too_large_message(size: int | None, limit: int) -> str:
    """The one message for an upload over the limit."""
    what = f"upload of {size:,} bytes" if size is not None else "upload"
    return f"{what} is over the server's limit of {limit:,} bytes; send a smaller file"


async def read_upload(file: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes, refusing more than ``limit`` and an empty file."""
    if file.size is not None and file.size > limit:
        raise LimitError(too_large_message(file.size, limit), param="upload")
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise LimitError(too_large_message(len(data), limit), param="upload")
    if not data:
        raise EmptyUploadError("the uploaded file is empty", param="upload")
    return data


def check_output(width: int, height: int, what: str, max_pixels: int, spec: ModelSpec, config: RenderConfig) -> int:
    """Check an output's size and work before any: pixels, then overlap range and window count.

    Returns the number of windows. Raises :class:`LimitError` (HTTP 413) over the server's
    pixel or window limit, :class:`~satgen_geo.errors.ConfigError` (400) for an overlap
    outside ``0..max_overlap(tile_px)``.
    """
    if width * height > max_pixels:
        raise LimitError(
            f"{what} is {width}×{height} = {width * height:,} pixels, over the server's limit of {max_pixels:,}; "
            "send a smaller area (or render it locally with 'satgen render')",
            param="max_pixels",
        )
    return check_work(height, width, spec, config)


def probe_geotiff(data: bytes) -> tuple[int, int]:
    """Width and height of an uploaded GeoTIFF from its header; refuse anything that is not a TIFF.

    GDAL must never open another format from a client, so the TIFF signature is checked first.
    """
    if not data.startswith(_TIFF_MAGIC):
        raise UnsupportedUploadError(
            "the upload is not a TIFF; send a 2-band mask GeoTIFF (build one with 'satgen mask'), "
            "or a painted PNG to /generate",
            param="upload",
        )
    try:
        with rasterio.MemoryFile(data) as memfile, memfile.open(driver="GTiff") as src:
            return src.width, src.height
    except RasterioError as err:
        raise UnsupportedUploadError(
            f"the upload cannot be read as a GeoTIFF ({str(err).splitlines()[0]})", param="upload"
        ) from None
