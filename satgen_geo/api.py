"""HTTP API (FastAPI) for the browser mask editor and for GIS clients: ``satgen serve``.

Endpoints
---------
``POST /generate``
    A painted mask image (PNG, JPEG, TIFF; multipart field ``file``) → ``image/png`` of the
    same size. Red-dominant pixels are roads, green-dominant pixels are buildings, the rest
    (and fully transparent pixels) background; this is the request the SatGen-CV editor
    sends to ``http://localhost:8000/generate``.
``POST /generate/geotiff``
    A two-band mask GeoTIFF (``satgen mask``) → the georeferenced RGB GeoTIFF, same CRS and
    transform.
``POST /generate/bbox``
    JSON ``{"bbox": [w, s, e, n], "gsd": 1.0, "seed": 0, "deterministic": false,
    "overlap": null}`` → RGB GeoTIFF of the area, masks drawn from Overpass OSM data.
``GET /health``, ``GET /model``
    Liveness and queue state; the loaded model's spec, parameter count and SHA-256.

Every image goes through the same streaming engine as ``satgen render``
(:func:`satgen_geo.engine.render`); a painted PNG is written as a temporary 2-band GeoTIFF
(EPSG:3857, 1 m pixels) in a per-request temporary folder. One model is loaded when the app
is built, so a bad checkpoint fails before the server listens. Jobs run off the event loop
in a pool of ``workers`` threads; at most ``queue_size`` jobs run or wait, further requests
get ``503`` with ``Retry-After`` at once. Size limits are checked before anything is decoded:
the request body (``413``), then the image or raster header (``413`` over
``max_output_pixels``). Errors are JSON ``{"detail": "..."}`` with the toolkit's one-line
message.

Only this module imports FastAPI (install the ``api`` extra); the core never does.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from rasterio.errors import RasterioError
from rasterio.transform import from_origin
from starlette.concurrency import run_in_threadpool

from satgen_geo import __version__
from satgen_geo.engine import RenderConfig, render
from satgen_geo.errors import (
    AOIError,
    AreaTooLargeError,
    CancelledError,
    CRSError,
    InputFileError,
    OSMDownloadError,
    OutputError,
    SatgenError,
)
from satgen_geo.grid import Grid, aoi_from_bbox
from satgen_geo.mask import MaskConfig, MaskSource, mask_grid
from satgen_geo.model.checkpoint import count_parameters
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.osm.fetch import OverpassConfig
from satgen_geo.pipeline import generate

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CORS_ORIGINS = (
    "http://localhost:5173",
    "http://127.0.0.1:5173",
    "http://localhost:3000",
    "http://127.0.0.1:3000",
)
#: Image formats accepted by ``POST /generate`` (Pillow format names).
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")
#: Any painted-mask pixel value at least this bright in its dominant channel…
DOMINANT_MIN = 128
#: …and this much brighter than both other channels is a road (red) or building (green).
DOMINANT_MARGIN = 64
#: Room for multipart boundaries and headers on top of ``max_upload_bytes``.
_MULTIPART_SLACK = 64 * 1024
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: The CRS of the temporary GeoTIFF a painted PNG becomes: any metric CRS will do.
_PNG_CRS = "EPSG:3857"
_DEFAULT_RETRY_AFTER_S = 5
#: An oversize body up to this size is read and dropped before the 413 (see :class:`_BodyLimit`).
_DRAIN_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ApiSettings:
    """How ``satgen serve`` runs.

    Parameters
    ----------
    checkpoint
        Generator checkpoint; ``None`` is the model shipped with the package.
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    cors_origins
        Browser origins allowed to call the API (the mask editor's dev servers by default).
    max_upload_bytes
        Largest accepted upload (image or GeoTIFF); larger requests get 413 unread.
    max_output_pixels
        Largest image (width × height) rendered; checked from the header / bbox first.
    queue_size
        Jobs running plus waiting; requests beyond it get 503 with ``Retry-After``.
    workers
        Jobs rendered at the same time (threads sharing the one model).
    overpass
        Overpass server and cache for ``POST /generate/bbox``.
    gsd_m
        Default pixel size in metres for ``POST /generate/bbox``.
    """

    checkpoint: str | Path | None = None
    device: str = "auto"
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    max_upload_bytes: int = 20 * 1024 * 1024
    max_output_pixels: int = 4096 * 4096
    queue_size: int = 4
    workers: int = 1
    overpass: OverpassConfig = field(default_factory=OverpassConfig)
    gsd_m: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.cors_origins, str):
            object.__setattr__(self, "cors_origins", (self.cors_origins,))
        else:
            object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for name in ("max_upload_bytes", "max_output_pixels", "queue_size", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SatgenError(f"API setting {name} must be a positive integer, got {value!r}")
        if self.queue_size < self.workers:
            raise SatgenError(
                f"API setting queue_size={self.queue_size} is smaller than workers={self.workers}; "
                "the queue holds the running jobs too"
            )
        if not (isinstance(self.gsd_m, (int, float)) and math.isfinite(self.gsd_m) and self.gsd_m > 0):
            raise SatgenError(f"API setting gsd_m must be a positive number of metres, got {self.gsd_m!r}")


class BboxRequest(BaseModel):
    """Body of ``POST /generate/bbox``."""

    model_config = ConfigDict(extra="forbid")

    bbox: list[float] = Field(
        min_length=4, max_length=4, description="EPSG:4326 west, south, east, north in degrees",
        examples=[[26.945, 60.525, 26.955, 60.530]],
    )
    gsd: float | None = Field(None, gt=0, description="Pixel size in metres (default: the server's, 1.0)")
    seed: int = Field(0, description="Seed; the same seed gives bit-identical output")
    deterministic: bool = Field(False, description="No input noise and no dropout")
    overlap: int | None = Field(None, ge=0, description="Window overlap in pixels (default: the model's)")


class QueueFullError(Exception):
    """Every slot of the job queue is taken; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy (all job slots taken); retry in about {retry_after} s")
        self.retry_after = retry_after


class JobFailedError(Exception):
    """A job failed with an unexpected error (a bug or the machine): HTTP 500, logged with its traceback."""


class JobQueue:
    """A bounded pool: ``workers`` threads, at most ``capacity`` jobs admitted (running + waiting).

    :meth:`run` never blocks the event loop and never queues beyond ``capacity``: a job
    that finds no free slot raises :class:`QueueFullError` immediately.
    """

    def __init__(self, workers: int, capacity: int) -> None:
        self.workers, self.capacity = workers, capacity
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="satgen-api")
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._mean_s: float | None = None
        self.closing = threading.Event()

    def stats(self) -> dict[str, int]:
        """``running``, ``waiting`` and ``capacity`` right now."""
        with self._lock:
            return {"running": self._running, "waiting": self._admitted - self._running, "capacity": self.capacity}

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: mean job time × queued jobs per worker."""
        with self._lock:
            if self._mean_s is None:
                return _DEFAULT_RETRY_AFTER_S
            rounds = max(self._admitted, 1) / self.workers
            return int(min(max(math.ceil(self._mean_s * rounds), 1), 600))

    async def run(self, job: Callable[[Callable[[], bool]], T]) -> T:
        """Run ``job(cancel)`` on the pool and await its result.

        ``cancel()`` turns true when the awaiting request is cancelled or the server shuts
        down; the engine checks it per batch of windows.
        """
        with self._lock:
            full = self._admitted >= self.capacity or self.closing.is_set()
            if not full:
                self._admitted += 1
        if full:
            raise QueueFullError(self.retry_after())
        abandoned = threading.Event()

        def cancel() -> bool:
            return abandoned.is_set() or self.closing.is_set()

        try:
            future = self._pool.submit(self._call, job, cancel)
        except RuntimeError:  # the pool is shut down
            self._release()
            raise QueueFullError(self.retry_after()) from None
        future.add_done_callback(lambda _: self._release())
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            abandoned.set()
            future.cancel()
            raise

    def _call(self, job: Callable[[Callable[[], bool]], T], cancel: Callable[[], bool]) -> T:
        with self._lock:
            self._running += 1
        started = time.perf_counter()
        try:
            return job(cancel)
        except (HTTPException, SatgenError):
            raise
        except Exception as err:
            log.exception("generation job failed")
            first = (str(err).splitlines() or [""])[0][:200]
            raise JobFailedError(f"generation failed ({type(err).__name__}: {first}); see the server log") from err
        finally:
            seconds = time.perf_counter() - started
            with self._lock:
                self._running -= 1
                self._mean_s = seconds if self._mean_s is None else 0.7 * self._mean_s + 0.3 * seconds

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def shutdown(self) -> None:
        """Cancel waiting jobs, ask running ones to stop, wait for the threads."""
        self.closing.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- the app


def create_app(settings: ApiSettings | None = None, model: LoadedModel | None = None) -> FastAPI:
    """Build the FastAPI app around one loaded model.

    Parameters
    ----------
    settings
        Limits, CORS origins, queue, Overpass; ``ApiSettings()`` by default.
    model
        An already loaded model; ``None`` loads ``settings.checkpoint`` on ``settings.device``
        now, so a missing or wrong checkpoint raises before any server starts.

    Raises
    ------
    CheckpointError
        If the checkpoint cannot be loaded.
    """
    settings = settings or ApiSettings()
    if model is None:
        model = load_model(settings.checkpoint, settings.device)
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < settings.max_output_pixels:
        # Pillow's decompression-bomb guard must not refuse what the settings allow
        Image.MAX_IMAGE_PIXELS = settings.max_output_pixels
    queue = JobQueue(settings.workers, settings.queue_size)
    parameters = count_parameters(model.generator)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("serving model %s (%s) on %s", model.spec.name, model.sha256, model.device)
        yield
        await run_in_threadpool(queue.shutdown)

    app = FastAPI(
        title="satgen-geo",
        version=__version__,
        summary="Synthetic aerial imagery from road/building masks (Pix2Pix U-Net)",
        description=(
            "Painted mask PNG → PNG (the SatGen-CV editor's `/generate`), mask GeoTIFF → RGB GeoTIFF, "
            "or a bounding box → RGB GeoTIFF from OpenStreetMap. The output is synthetic imagery, "
            "not a photograph."
        ),
        lifespan=lifespan,
    )
    app.state.settings, app.state.model, app.state.queue = settings, model, queue

    app.add_middleware(_BodyLimit, max_bytes=settings.max_upload_bytes + _MULTIPART_SLACK)
    app.add_middleware(  # added last = outermost: error responses carry CORS headers too
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "Content-Disposition"],
    )

    @app.exception_handler(QueueFullError)
    async def _queue_full(request: Request, err: QueueFullError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": str(err.retry_after)})

    @app.exception_handler(JobFailedError)
    async def _job_failed(request: Request, err: JobFailedError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=500)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        # logged with its traceback by Starlette's error middleware; the client gets JSON too
        first = (str(err).splitlines() or [""])[0][:200]
        return JSONResponse({"detail": f"internal error ({type(err).__name__}: {first}); see the server log"}, status_code=500)

    @app.exception_handler(SatgenError)
    async def _satgen_error(request: Request, err: SatgenError) -> JSONResponse:
        status = _status_for(err)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, err)
        headers = {"Retry-After": str(queue.retry_after())} if status == 503 else None
        return JSONResponse({"detail": str(err)}, status_code=status, headers=headers)

    def render_options(seed: int, deterministic: bool, overlap: int | None, **extra: Any) -> RenderConfig:
        if overlap is not None and not 0 <= overlap < model.spec.tile_px:
            raise SatgenError(f"overlap={overlap} must be in [0, {model.spec.tile_px}) pixels")
        return RenderConfig(seed=seed, deterministic=deterministic, overlap_px=overlap, **extra)

    @app.get("/health", summary="Liveness, model and queue state")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model_loaded": True, "device": str(model.device), "queue": queue.stats()}

    @app.get("/model", summary="The loaded model: spec, parameter count, SHA-256")
    async def model_info() -> dict[str, Any]:
        info = model.spec.to_dict()
        info.update(parameter_count=parameters, sha256=model.sha256, source=_public_source(model), device=str(model.device))
        return info

    @app.post(
        "/generate",
        summary="Painted mask image → generated PNG",
        description=(
            "Upload a painted mask (PNG, JPEG or TIFF; RGB, RGBA or palette) as multipart field `file`. "
            "Red-dominant pixels are roads, green-dominant pixels buildings, everything else and fully "
            "transparent pixels background. Returns a PNG of the same size. Options as query parameters "
            "or form fields."
        ),
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, **_ERROR_RESPONSES},
    )
    async def generate_png(
        file: UploadFile = File(..., description="painted mask image"),
        seed: int | None = Query(None, description="seed (default 0); the same seed gives the same image"),
        overlap: int | None = Query(None, description="window overlap in pixels (default: the model's)"),
        deterministic: bool | None = Query(None, description="no input noise and no dropout"),
        seed_form: int | None = Form(None, alias="seed", include_in_schema=False),
        overlap_form: int | None = Form(None, alias="overlap", include_in_schema=False),
        deterministic_form: bool | None = Form(None, alias="deterministic", include_in_schema=False),
    ) -> Response:
        data = await _read_upload(file, settings.max_upload_bytes)
        _probe_image(data, settings.max_output_pixels)
        config = render_options(
            _first(seed, seed_form, 0), bool(_first(deterministic, deterministic_form, False)),
            _first(overlap, overlap_form, None), overviews=False,
        )
        png = await queue.run(partial(_render_painted, data, model, config))
        return Response(png, media_type="image/png", headers={"Content-Disposition": 'attachment; filename="generated.png"'})

    @app.post(
        "/generate/geotiff",
        summary="Mask GeoTIFF → georeferenced RGB GeoTIFF",
        description=(
            "Upload a 2-band uint8 mask GeoTIFF (band 1 roads, band 2 buildings, 0/255; as `satgen mask` "
            "writes) as multipart field `file`. Returns the RGB GeoTIFF with the same CRS and transform."
        ),
        response_class=Response,
        responses={200: {"content": {"image/tiff": {}}}, **_ERROR_RESPONSES},
    )
    async def generate_geotiff(
        file: UploadFile = File(..., description="2-band mask GeoTIFF"),
        seed: int = Query(0, description="seed; the same seed gives bit-identical output"),
        overlap: int | None = Query(None, description="window overlap in pixels (default: the model's)"),
        deterministic: bool = Query(False, description="no input noise and no dropout"),
    ) -> Response:
        data = await _read_upload(file, settings.max_upload_bytes)
        await run_in_threadpool(_probe_geotiff, data, settings.max_output_pixels)
        config = render_options(seed, deterministic, overlap)
        tif = await queue.run(partial(_render_geotiff, data, model, config))
        return Response(tif, media_type="image/tiff", headers={"Content-Disposition": 'attachment; filename="generated.tif"'})

    @app.post(
        "/generate/bbox",
        summary="Bounding box → RGB GeoTIFF from OpenStreetMap",
        description=(
            "Downloads roads and buildings for the EPSG:4326 bbox from Overpass, draws the mask in the "
            "area's UTM zone and renders it. Overpass unreachable → 503."
        ),
        response_class=Response,
        responses={200: {"content": {"image/tiff": {}}}, **_ERROR_RESPONSES},
    )
    async def generate_bbox(body: BboxRequest) -> Response:
        gsd = body.gsd if body.gsd is not None else float(settings.gsd_m)
        grid = await run_in_threadpool(_bbox_grid, body.bbox, gsd)
        _check_pixels(grid.width, grid.height, settings.max_output_pixels, f"the bbox at {gsd:g} m/px")
        config = render_options(body.seed, body.deterministic, body.overlap)
        source = MaskSource(bbox=tuple(body.bbox), overpass=settings.overpass)
        tif = await queue.run(partial(_render_bbox, source, MaskConfig(gsd_m=gsd), model, config))
        return Response(tif, media_type="image/tiff", headers={"Content-Disposition": 'attachment; filename="generated.tif"'})

    return app


def serve(settings: ApiSettings | None = None, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Load the model, then serve the API with uvicorn until interrupted.

    Raises
    ------
    CheckpointError
        Before listening, if the checkpoint cannot be loaded.
    """
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)


# --------------------------------------------------------------------------- errors and limits

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad option"},
    413: {"description": "Upload or output too large"},
    415: {"description": "Not a supported image / not a GeoTIFF"},
    422: {"description": "Invalid mask, CRS or bbox"},
    503: {"description": "Busy (see Retry-After) or Overpass unreachable"},
}


def _status_for(err: SatgenError) -> int:
    """The HTTP status for a toolkit error."""
    if isinstance(err, AreaTooLargeError):
        return 413
    if isinstance(err, (AOIError, CRSError, InputFileError)):
        return 422
    if isinstance(err, (OSMDownloadError, CancelledError)):
        return 503
    if isinstance(err, OutputError):
        return 500
    return 400


class _BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` (by Content-Length, or while streaming).

    Before answering 413 the rest of the body is read and dropped (up to ``_DRAIN_BYTES``):
    a server that closes a connection with unread data makes the client see a reset
    instead of the 413.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes - _MULTIPART_SLACK
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= _DRAIN_BYTES:
                await _drain(receive, _DRAIN_BYTES)
            response = JSONResponse(
                {"detail": _too_large_message(int(declared), limit)}, status_code=413, headers={"Connection": "close"}
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, _DRAIN_BYTES)
                    raise HTTPException(413, _too_large_message(None, limit), headers={"Connection": "close"})
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


def _too_large_message(size: int | None, limit: int) -> str:
    what = f"upload of {size:,} bytes" if size is not None else "upload"
    return f"{what} is over the server's limit of {limit:,} bytes; send a smaller file"


async def _read_upload(file: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes, refusing more than ``limit``."""
    if file.size is not None and file.size > limit:
        raise HTTPException(413, _too_large_message(file.size, limit))
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, _too_large_message(len(data), limit))
    if not data:
        raise HTTPException(400, "the uploaded file is empty")
    return data


def _check_pixels(width: int, height: int, limit: int, what: str) -> None:
    if width * height > limit:
        raise HTTPException(
            413,
            f"{what} is {width}×{height} = {width * height:,} pixels, over the server's limit of {limit:,}; "
            "send a smaller area (or render it locally with 'satgen render')",
        )


def _first(*values: Any) -> Any:
    """The first value that is not None (the last one is the default)."""
    return next((v for v in values if v is not None), values[-1])


def _public_source(model: LoadedModel) -> str:
    """The checkpoint's file name (not the server's path), or ``default``."""
    return model.source if model.source == "default" else Path(model.source).name


# --------------------------------------------------------------------------- painted masks


def _open_image(data: bytes) -> Image.Image:
    """Open (lazily: header only) an uploaded image, or raise 415/413."""
    try:
        return Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as err:
        raise HTTPException(413, f"the image is too large to decode ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise HTTPException(
            415, "the upload is not a PNG, JPEG or TIFF image; send the painted mask as PNG "
            "(a mask GeoTIFF goes to /generate/geotiff)"
        ) from None


def _probe_image(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Width and height from the image header, checked against ``max_pixels`` before decoding."""
    with _open_image(data) as image:
        width, height = image.size
    _check_pixels(width, height, max_pixels, "the image")
    return width, height


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


def _render_painted(data: bytes, model: LoadedModel, config: RenderConfig, cancel: Callable[[], bool]) -> bytes:
    """Painted mask bytes → PNG bytes of the same size, through the streaming engine."""
    try:
        with _open_image(data) as image:
            image.load()
            mask = classify_painted(image)
    except HTTPException:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise HTTPException(415, f"the image could not be decoded ({err}); send a valid PNG") from None
    _, height, width = mask.shape
    with tempfile.TemporaryDirectory(prefix="satgen-api-") as tmp:
        mask_path, out_path = Path(tmp) / "mask.tif", Path(tmp) / "image.tif"
        meta = {
            "driver": "GTiff", "dtype": "uint8", "count": 2, "width": width, "height": height,
            "crs": _PNG_CRS, "transform": from_origin(0.0, float(height), 1.0, 1.0),
        }
        with rasterio.open(mask_path, "w", **meta) as dst:
            dst.write(mask)
        with _scrubbed(tmp, "the painted mask"):
            render(mask_path, out_path, model, config, cancel=cancel)
        with rasterio.open(out_path) as src:
            rgb = src.read()
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- GeoTIFF and bbox


def _probe_geotiff(data: bytes, max_pixels: int) -> None:
    """Refuse non-TIFF uploads (GDAL must never open another format) and oversize rasters."""
    if not data.startswith(_TIFF_MAGIC):
        raise HTTPException(
            415, "the upload is not a TIFF; send a 2-band mask GeoTIFF (build one with 'satgen mask'), "
            "or a painted PNG to /generate"
        )
    try:
        with rasterio.MemoryFile(data) as memfile, memfile.open(driver="GTiff") as src:
            width, height = src.width, src.height
    except RasterioError as err:
        raise HTTPException(415, f"the upload cannot be read as a GeoTIFF ({str(err).splitlines()[0]})") from None
    _check_pixels(width, height, max_pixels, "the mask GeoTIFF")


def _render_geotiff(data: bytes, model: LoadedModel, config: RenderConfig, cancel: Callable[[], bool]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="satgen-api-") as tmp:
        mask_path, out_path = Path(tmp) / "mask.tif", Path(tmp) / "image.tif"
        mask_path.write_bytes(data)
        with _scrubbed(tmp, "the uploaded GeoTIFF"):
            render(mask_path, out_path, model, config, cancel=cancel)
        return out_path.read_bytes()


def _bbox_grid(bbox: list[float], gsd: float) -> Grid:
    """The grid ``satgen generate`` will draw for the bbox (validates it: AOIError → 422)."""
    return mask_grid(aoi_from_bbox(bbox), MaskConfig(gsd_m=gsd))[0]


def _render_bbox(
    source: MaskSource, mask_config: MaskConfig, model: LoadedModel, config: RenderConfig, cancel: Callable[[], bool]
) -> bytes:
    with tempfile.TemporaryDirectory(prefix="satgen-api-") as tmp:
        out_path = Path(tmp) / "image.tif"
        with _scrubbed(tmp, "the area"):
            generate(out_path, source, model, mask_config, config, cancel=cancel)
        return out_path.read_bytes()


class _scrubbed:
    """Re-raise toolkit errors with the server's temporary paths replaced by ``name``."""

    def __init__(self, folder: str, name: str) -> None:
        self.pattern = re.compile(re.escape(str(folder)) + r"[^\s,;:'\"()]*")
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, err: BaseException | None, tb: Any) -> bool:
        if isinstance(err, SatgenError):
            message = self.pattern.sub(self.name, str(err))
            if message != str(err):
                try:
                    clean = type(err)(message)
                except Exception:  # an error class with another signature: keep the original
                    return False
                raise clean from None
        return False
