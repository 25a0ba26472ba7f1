"""One table from exception to HTTP status, and the handlers that answer with it.

Every error response is JSON ``{"detail": "<one-line message>", "param": <concept or null>}``;
``param`` is the :class:`~satgen_geo.errors.SatgenError` concept the message is about (see
:data:`satgen_geo.errors.PARAMS`), so a client can point at its own control.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from satgen_geo.errors import (
    AOIError,
    CancelledError,
    CheckpointError,
    CRSError,
    DeviceError,
    InputFileError,
    LimitError,
    MissingDependencyError,
    OSMDownloadError,
    OutputError,
    SatgenError,
)
from satgen_geo.tiles import TileError, TileZoomError

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """Every slot of the job queue is taken; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy (all job slots taken); retry in about {retry_after} s")
        self.retry_after = retry_after


class JobFailedError(Exception):
    """A job failed with an unexpected error (a bug or the machine): HTTP 500, logged with its traceback."""


class ClientDisconnectedError(Exception):
    """The client closed the connection while its job waited or ran; the job was cancelled."""


class NoTileSourceError(SatgenError):
    """The server was started without a tile source (HTTP 404 on the tile endpoints)."""


class UnsupportedUploadError(InputFileError):
    """The upload is not in a format the endpoint reads (HTTP 415)."""


class EmptyUploadError(InputFileError):
    """The upload has no bytes (HTTP 400)."""


class UploadTooLargeError(HTTPException):
    """A request body over the limit, raised while the body streams in (FastAPI re-raises HTTPExceptions)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message, headers={"Connection": "close"})
        self.param = "upload"


#: Exception → HTTP status; the first matching class wins, so subclasses come first.
STATUS_TABLE: tuple[tuple[type[Exception], int], ...] = (
    (QueueFullError, 503),
    (TileError, 404),
    (NoTileSourceError, 404),
    (TileZoomError, 422),
    (ClientDisconnectedError, 499),  # nginx's "client closed request"; nobody reads it
    (JobFailedError, 500),
    (UnsupportedUploadError, 415),
    (EmptyUploadError, 400),
    (LimitError, 413),
    (AOIError, 422),
    (CRSError, 422),
    (InputFileError, 422),
    (OSMDownloadError, 503),
    (CancelledError, 503),
    (OutputError, 500),
    (CheckpointError, 500),
    (DeviceError, 500),
    (MissingDependencyError, 500),
    (SatgenError, 400),
)

#: Request fields → the concept a validation error's ``param`` names.
FIELD_PARAMS = {"bbox": "bbox", "gsd": "gsd_m", "seed": "seed", "overlap": "overlap_px", "file": "upload"}

#: The error statuses the generate endpoints document in OpenAPI.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad option (e.g. overlap out of range)"},
    403: {"description": "Request from a web page whose origin is not allowed"},
    413: {"description": "Upload, output size or window count over the server's limit"},
    415: {"description": "Not a supported image / not a GeoTIFF"},
    422: {"description": "Invalid mask, CRS or bbox"},
    503: {"description": "Busy (see Retry-After) or Overpass unreachable"},
}


def status_for(err: BaseException) -> int:
    """The HTTP status :data:`STATUS_TABLE` gives ``err`` (500 for anything not in it)."""
    return next((status for kind, status in STATUS_TABLE if isinstance(err, kind)), 500)


def error_response(
    status: int, message: str, param: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON error body every failure uses."""
    return JSONResponse({"detail": message, "param": param}, status_code=status, headers=headers)


async def _handle(request: Request, err: Exception) -> JSONResponse:
    """Answer a known exception with its status from :data:`STATUS_TABLE`."""
    status = status_for(err)
    headers = None
    if status == 503:
        retry = err.retry_after if isinstance(err, QueueFullError) else request.app.state.queue.retry_after()
        headers = {"Retry-After": str(retry)}
    if isinstance(err, ClientDisconnectedError):
        log.info("%s %s: client disconnected; its job was cancelled", request.method, request.url.path)
    elif status >= 500 and not isinstance(err, (QueueFullError, JobFailedError)):
        # busy is no fault; failures log their traceback
        log.warning("%s %s: %s", request.method, request.url.path, err)
    return error_response(status, str(err), getattr(err, "param", None), headers)


async def _http_exception(request: Request, err: Exception) -> JSONResponse:
    if not isinstance(err, HTTPException):  # registered for HTTPException only
        return await _unexpected(request, err)
    return error_response(err.status_code, str(err.detail), getattr(err, "param", None), err.headers)


async def _invalid_request(request: Request, err: Exception) -> JSONResponse:
    """FastAPI's 422 (``detail`` is its list of field errors) with the first field's ``param``."""
    errors = err.errors() if isinstance(err, RequestValidationError) else []
    field = next((str(e["loc"][-1]) for e in errors if e.get("loc")), "")
    return JSONResponse({"detail": jsonable_encoder(errors), "param": FIELD_PARAMS.get(field)}, status_code=422)


async def _unexpected(request: Request, err: Exception) -> JSONResponse:
    # logged with its traceback by Starlette's error middleware; the client gets JSON too
    first = (str(err).splitlines() or [""])[0][:200]
    return error_response(500, f"internal error ({type(err).__name__}: {first}); see the server log")


def add_exception_handlers(app: FastAPI) -> None:
    """Register the JSON handlers: :data:`STATUS_TABLE`'s classes, HTTPExceptions, and the rest as 500."""
    for kind, _ in STATUS_TABLE:
        app.add_exception_handler(kind, _handle)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected)


@contextmanager
def scrubbed_paths(folder: str, name: str) -> Iterator[None]:
    """Re-raise toolkit errors with the server's temporary ``folder`` paths replaced by ``name``."""
    try:
        yield
    except SatgenError as err:
        message = re.sub(re.escape(str(folder)) + r"[^\s,;:'\"()]*", name, str(err))
        if message == str(err):
            raise
        raise _with_message(err, message) from None


def _with_message(err: SatgenError, message: str) -> SatgenError:
    """``err`` again with ``message``; ``err`` itself if its class takes other arguments."""
    try:
        return type(err)(message, param=err.param)
    except TypeError:
        return err
