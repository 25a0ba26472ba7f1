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
``GET /tiles/{z}/{x}/{y}.png`` (``.webp``, ``.jpg``), ``GET /tiles/tilejson.json``
    With a tile source (``ApiSettings.tiles``, ``satgen serve --tiles SOURCE``): XYZ tiles of
    synthetic imagery in Web Mercator, rendered on demand and cached
    (:mod:`~satgen_geo.api.tiles`, :mod:`satgen_geo.tiles`), and their TileJSON.
``GET /map``
    A web map (Leaflet, served locally) of those tiles: fitted to their bounds, with their
    attribution and an opacity slider (:mod:`~satgen_geo.api.mappage`).
``GET /health``, ``GET /model``
    Liveness, queue state and job counts; the loaded model's spec, parameter count and SHA-256.

Every image goes through the same streaming engine as ``satgen render``. One model is loaded
when the app is built, so a bad checkpoint fails before the server listens. Before any work
a request is bounded (:mod:`~satgen_geo.api.limits`): a foreign web page's request is
refused (403, :mod:`~satgen_geo.api.origin`), then the body size, the image header's
pixels and the render's window count (413). Jobs run in a bounded queue
(:mod:`~satgen_geo.api.jobs`; 503 with ``Retry-After`` when full) and are cancelled when
their client disconnects. Errors are JSON ``{"detail": "...", "param": ...}``
(:mod:`~satgen_geo.api.errors`).

Modules: ``settings`` (:class:`ApiSettings`), ``routes`` (the endpoints), ``tiles`` and ``mappage`` (the
basemap's tiles and web map), ``jobs`` (queue),
``limits`` and ``origin`` (bounds), ``painted`` (painted-image decoding), ``work`` (the
render jobs), ``errors`` (exception → status). Only this package imports FastAPI (install
the ``api`` extra); the core never does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from satgen_geo import __version__
from satgen_geo.api.errors import QueueFullError, add_exception_handlers
from satgen_geo.api.jobs import JobQueue
from satgen_geo.api.limits import BodyLimit
from satgen_geo.api.mappage import add_map
from satgen_geo.api.origin import OriginCheck
from satgen_geo.api.painted import (
    DOMINANT_MARGIN,
    DOMINANT_MIN,
    IMAGE_FORMATS,
    classify_painted,
)
from satgen_geo.api.routes import BboxRequest, RenderParams, router
from satgen_geo.api.settings import DEFAULT_CORS_ORIGINS, ApiSettings
from satgen_geo.api.tiles import router as tiles_router
from satgen_geo.engine import RenderConfig
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.tiles import TileSource

__all__ = [
    "DEFAULT_CORS_ORIGINS", "DOMINANT_MARGIN", "DOMINANT_MIN", "IMAGE_FORMATS", "ApiSettings", "BboxRequest",
    "JobQueue", "QueueFullError", "RenderParams", "classify_painted", "create_app", "serve",
]

log = logging.getLogger(__name__)

_DESCRIPTION = (
    "Painted mask PNG → PNG (the SatGen-CV editor's `/generate`), mask GeoTIFF → RGB GeoTIFF, "
    "or a bounding box → RGB GeoTIFF from OpenStreetMap. The output is synthetic imagery, not a photograph."
)


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
    app = FastAPI(title="satgen-geo", version=__version__, description=_DESCRIPTION, lifespan=_lifespan,
                  summary="Synthetic aerial imagery from road/building masks (Pix2Pix U-Net)")
    app.state.settings = settings
    app.state.model = model if model is not None else load_model(settings.checkpoint, settings.device)
    app.state.queue = JobQueue(settings.workers, settings.queue_size)
    app.state.tile_queue = JobQueue(settings.workers, settings.tile_queue_size)
    app.state.tiles = _tile_source(settings, app.state.model)
    app.include_router(router)
    app.include_router(tiles_router)
    add_map(app)
    add_exception_handlers(app)
    app.add_middleware(BodyLimit, upload_bytes=settings.max_upload_bytes)
    app.add_middleware(OriginCheck, allowed=settings.cors_origins)  # before the body is read
    app.add_middleware(  # added last = outermost: preflights answered, error responses carry CORS headers
        CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
        allow_headers=["*"], expose_headers=["Retry-After", "Content-Disposition"],
    )
    return app


def _tile_source(settings: ApiSettings, model: LoadedModel) -> TileSource | None:
    """The tile source of ``settings.tiles`` (its grid and cache set up now), or ``None``."""
    if settings.tiles is None:
        return None
    render = RenderConfig(backend=settings.backend, precision=settings.precision, max_windows=settings.max_windows)
    return TileSource(settings.tiles, model, settings.tile_config, render)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    model = app.state.model
    log.info("serving model %s (%s) on %s", model.spec.name, model.sha256, model.device)
    yield
    await run_in_threadpool(app.state.queue.shutdown)
    await run_in_threadpool(app.state.tile_queue.shutdown)


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
