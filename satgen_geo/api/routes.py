"""The HTTP endpoints: one :class:`~fastapi.APIRouter`.

The app's settings, model and queue reach every endpoint through one dependency
(:func:`get_server`, reading ``request.app.state``), and the render options through another
(:func:`render_params`, query or form values). Every generate endpoint does the same steps:
read and bound the upload, probe its header off the event loop, check the output's pixels
and windows, then run the job on the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from fastapi.types import DecoratedCallable
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from satgen_geo.api.errors import ERROR_RESPONSES
from satgen_geo.api.jobs import JobQueue
from satgen_geo.api.limits import check_output, probe_geotiff, read_upload
from satgen_geo.api.painted import probe_image
from satgen_geo.api.settings import ApiSettings
from satgen_geo.api.work import bbox_grid, render_bbox, render_geotiff, render_painted
from satgen_geo.engine import RenderConfig, max_overlap
from satgen_geo.mask import MaskConfig, MaskSource
from satgen_geo.model.checkpoint import count_parameters
from satgen_geo.model.loaded import LoadedModel

T = TypeVar("T")
router = APIRouter()

_OVERLAP_HELP = f"window overlap in pixels, 0 to {max_overlap(256)} for 256 px windows (default: the model's)"


@dataclass(frozen=True)
class Server:
    """What an endpoint works with: the request and the app's settings, model and queue."""

    request: Request
    settings: ApiSettings
    model: LoadedModel
    queue: JobQueue

    async def render(self, job: Callable[..., T], size: tuple[int, int], what: str, config: RenderConfig) -> T:
        """Check a ``size = (width, height)`` output against the limits, then run ``job(model, config, cancel)``.

        The job is cancelled when the client disconnects.
        """
        width, height = size
        check_output(width, height, what, self.settings.max_output_pixels, self.model.spec, config)
        return await self.queue.run(partial(job, self.model, config), self.request.is_disconnected)

    async def render_upload(
        self, file: UploadFile, probe: Callable[[bytes], tuple[int, int]], job: Callable[..., T], what: str,
        config: RenderConfig,
    ) -> T:
        """Read and bound ``file``, ``probe`` its header off the event loop, then :meth:`render` ``job(data, …)``."""
        data = await read_upload(file, self.settings.max_upload_bytes)
        size = await run_in_threadpool(probe, data)
        return await self.render(partial(job, data), size, what, config)


def get_server(request: Request) -> Server:
    """The :class:`Server` of the app handling ``request``."""
    state = request.app.state
    return Server(request, state.settings, state.model, state.queue)


@dataclass(frozen=True)
class RenderParams:
    """The render options every generate endpoint accepts."""

    seed: int = 0
    deterministic: bool = False
    overlap: int | None = None

    def config(self, settings: ApiSettings, **extra: Any) -> RenderConfig:
        """The engine's config for these options under the server's window limit."""
        return RenderConfig(
            seed=self.seed, deterministic=self.deterministic, overlap_px=self.overlap, backend=settings.backend,
            precision=settings.precision, max_windows=settings.max_windows, **extra,
        )


def render_params(
    seed: Annotated[int | None, Query(description="seed (default 0); the same seed gives the same image")] = None,
    overlap: Annotated[int | None, Query(description=_OVERLAP_HELP)] = None,
    deterministic: Annotated[bool | None, Query(description="no input noise and no dropout")] = None,
    seed_form: Annotated[int | None, Form(alias="seed", include_in_schema=False)] = None,
    overlap_form: Annotated[int | None, Form(alias="overlap", include_in_schema=False)] = None,
    deterministic_form: Annotated[bool | None, Form(alias="deterministic", include_in_schema=False)] = None,
) -> RenderParams:
    """The options from the query string or from form fields (the query string wins)."""
    return RenderParams(
        _first(seed, seed_form, 0), bool(_first(deterministic, deterministic_form, False)), _first(overlap, overlap_form, None)
    )


ServerDep = Annotated[Server, Depends(get_server)]
ParamsDep = Annotated[RenderParams, Depends(render_params)]


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
    overlap: int | None = Field(None, ge=0, description=_OVERLAP_HELP)


@router.get("/health", summary="Liveness, model, queue state and job counts")
async def health(server: ServerDep) -> dict[str, Any]:
    queue = server.queue
    return {"status": "ok", "model_loaded": True, "device": str(server.model.device), "queue": queue.stats(),
            "jobs": queue.counts()}


@router.get("/model", summary="The loaded model: spec, parameter count, SHA-256")
async def model_info(server: ServerDep) -> dict[str, Any]:
    model = server.model
    source = model.source if model.source == "default" else Path(model.source).name  # not the server's path
    info = model.spec.to_dict()
    info.update(parameter_count=count_parameters(model.generator), sha256=model.sha256, source=source,
                device=str(model.device), backend=server.settings.backend, precision=server.settings.precision)
    return info


def _generate_route(
    path: str, summary: str, description: str, media_type: str
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """``router.post`` for a generate endpoint answering ``media_type`` bytes or a JSON error."""
    return router.post(path, summary=summary, description=description, response_class=Response,
                       responses={200: {"content": {media_type: {}}}, **ERROR_RESPONSES})


@_generate_route(
    "/generate", "Painted mask image → generated PNG",
    "Upload a painted mask (PNG, JPEG or TIFF; RGB, RGBA or palette) as multipart field `file`. "
    "Red-dominant pixels are roads, green-dominant pixels buildings, everything else and fully "
    "transparent pixels background. Returns a PNG of the same size. Options as query parameters "
    "or form fields.",
    "image/png",
)
async def generate_png(
    server: ServerDep, params: ParamsDep, file: Annotated[UploadFile, File(description="painted mask image")]
) -> Response:
    config = params.config(server.settings, overviews=False)
    png = await server.render_upload(file, probe_image, render_painted, "the image", config)
    return _attachment(png, "image/png", "generated.png")


@_generate_route(
    "/generate/geotiff", "Mask GeoTIFF → georeferenced RGB GeoTIFF",
    "Upload a 2-band uint8 mask GeoTIFF (band 1 roads, band 2 buildings, 0/255; as `satgen mask` "
    "writes) as multipart field `file`. Returns the RGB GeoTIFF with the same CRS and transform.",
    "image/tiff",
)
async def generate_geotiff(
    server: ServerDep, params: ParamsDep, file: Annotated[UploadFile, File(description="2-band mask GeoTIFF")]
) -> Response:
    tif = await server.render_upload(file, probe_geotiff, render_geotiff, "the mask GeoTIFF", params.config(server.settings))
    return _attachment(tif, "image/tiff", "generated.tif")


@_generate_route(
    "/generate/bbox", "Bounding box → RGB GeoTIFF from OpenStreetMap",
    "Downloads roads and buildings for the EPSG:4326 bbox from Overpass, draws the mask in the "
    "area's UTM zone and renders it. Overpass unreachable → 503.",
    "image/tiff",
)
async def generate_bbox(server: ServerDep, body: BboxRequest) -> Response:
    gsd = body.gsd if body.gsd is not None else float(server.settings.gsd_m)
    grid = await run_in_threadpool(bbox_grid, body.bbox, gsd)
    source = MaskSource(bbox=tuple(body.bbox), overpass=server.settings.overpass)
    config = RenderParams(body.seed, body.deterministic, body.overlap).config(server.settings)
    job = partial(render_bbox, source, MaskConfig(gsd_m=gsd))
    tif = await server.render(job, (grid.width, grid.height), f"the bbox at {gsd:g} m/px", config)
    return _attachment(tif, "image/tiff", "generated.tif")


def _attachment(content: bytes, media_type: str, filename: str) -> Response:
    return Response(content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _first(*values: Any) -> Any:
    """The first value that is not None (the last one is the default)."""
    return next((v for v in values if v is not None), values[-1])
