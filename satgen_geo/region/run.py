"""The region job's driver: plan the chunks, run them (Dask or in process), keep the manifest, mosaic.

:func:`run_region` renders an area of any size as chunks (:mod:`satgen_geo.region.chunks`)
whose pixels equal a single-process render of the whole area. The chunks run on a Dask
cluster (:mod:`satgen_geo.region.dask`: a local one of ``workers`` processes, or an existing
scheduler), or one after the other in this process with ``workers=0``. Results land in

``OUTDIR/chunks/<id>.tif``
    One tiled GeoTIFF per non-empty chunk.
``OUTDIR/manifest.json``
    The job's identity and per-chunk records (:mod:`satgen_geo.region.manifest`).
``OUTDIR/mosaic.vrt`` (and ``mosaic.tif`` with ``cog=True``)
    The chunks as one raster: a GDAL VRT, and optionally one Cloud Optimized GeoTIFF.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import rasterio

from satgen_geo._atomic import ensure_dir
from satgen_geo._validate import check_int, check_number
from satgen_geo.engine import RenderConfig, check_work, resolve
from satgen_geo.errors import AOIError, ConfigError, MissingDependencyError, OutputError, SatgenError
from satgen_geo.grid import AOI, WGS84, Grid, aoi_from_bbox
from satgen_geo.mask import MaskConfig, MaskSource, mask_grid
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.osm.files import read_aoi
from satgen_geo.osm.store import is_store, store_extent
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.region.chunks import ChunkPlan, plan_chunks, touches_area
from satgen_geo.region.job import (
    CHUNKS_DIR,
    WORK_DIR,
    ChunkOutcome,
    ChunkTask,
    chunk_path,
    clip_area,
    run_chunk,
)
from satgen_geo.region.manifest import (
    DONE,
    EMPTY,
    ChunkRecord,
    Manifest,
    check_same_job,
    job_identity,
    job_key,
    load_manifest,
    save_manifest,
)
from satgen_geo.region.mosaic import Source, write_cog, write_vrt

log = logging.getLogger(__name__)

MOSAIC_VRT, MOSAIC_COG = "mosaic.vrt", "mosaic.tif"
#: The manifest is rewritten at most this often while chunks finish (and always at the end).
_SAVE_EVERY_S = 2.0


@dataclass(frozen=True)
class RegionConfig:
    """How a region job is cut up and where it runs.

    Parameters
    ----------
    chunk_px
        Chunk side in pixels, rounded down to a multiple of the window stride (256 to 65,536).
    workers
        Local Dask worker processes (one thread each); 0 runs the chunks in this process.
    scheduler
        Address of an existing Dask scheduler (``tcp://host:8786``); overrides ``workers``.
    connect_timeout_s
        How long to wait for that scheduler before giving up.
    torch_threads
        Torch threads per worker; ``None``: the machine's cores shared among local workers
        (a remote worker keeps its own setting).
    device
        Device each worker loads the model on (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    resources
        Dask worker resources each chunk needs, e.g. ``{"GPU": 1}`` for workers started with
        ``--resources GPU=1``.
    retries
        Times a chunk that raised is retried (a chunk whose worker died is rescheduled by Dask).
    max_pixels
        The largest region accepted, in pixels (checked before any work).
    cog
        Also write the mosaic as one Cloud Optimized GeoTIFF.
    dashboard
        Serve the Dask dashboard of a local cluster (needs ``bokeh``).
    """

    chunk_px: int = 4096
    workers: int = 2
    scheduler: str | None = None
    connect_timeout_s: float = 5.0
    torch_threads: int | None = None
    device: str = "auto"
    resources: Mapping[str, float] = field(default_factory=dict)
    retries: int = 2
    max_pixels: int = 10_000_000_000
    cog: bool = False
    dashboard: bool = True

    def __post_init__(self) -> None:
        check_int(self.chunk_px, "chunk_px", "chunk size (px)", minimum=256, maximum=65_536)
        check_int(self.workers, "cluster_workers", "local worker processes", minimum=0, maximum=1024)
        check_number(self.connect_timeout_s, "scheduler", "scheduler connection timeout (s)", open_min=True)
        if self.torch_threads is not None:
            check_int(self.torch_threads, "cluster_workers", "torch threads per worker", maximum=1024)
        check_int(self.retries, "cluster_workers", "chunk retries", minimum=0, maximum=100)
        check_int(self.max_pixels, "max_pixels", "region pixel limit")
        if self.scheduler is not None and not (isinstance(self.scheduler, str) and "://" in self.scheduler):
            raise ConfigError(f"scheduler address {self.scheduler!r} must look like tcp://HOST:PORT", param="scheduler")


@dataclass(frozen=True)
class RegionResult:
    """What :func:`run_region` did."""

    outdir: Path
    grid: Grid
    plan: ChunkPlan
    mosaic: Path | None
    cog: Path | None
    rendered: int
    reused: int
    empty: int
    seconds: float


def run_region(
    source: MaskSource,
    outdir: str | Path,
    model: LoadedModel,
    mask_config: MaskConfig | None = None,
    render_config: RenderConfig | None = None,
    config: RegionConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    on_cluster: Callable[[str | None], None] | None = None,
) -> RegionResult:
    """Render an area as chunks into ``outdir``, resuming or updating an earlier run of the same job.

    Parameters
    ----------
    source
        The area (``bbox`` or ``aoi``; default the extent of an OSM store) and local
        features: ``osm`` (an OSM store from ``satgen osm extract``, or any file
        ``satgen mask`` reads) or ``roads``/``buildings`` files. Overpass is not used.
    outdir
        Output folder (created); see the module docstring for its contents.
    model
        The model; each worker loads the same checkpoint file (``model.source``).
    mask_config, render_config
        As for ``satgen generate``; the grid is the one ``satgen mask`` would make.
    config
        Chunking, cluster and limits, see :class:`RegionConfig`.
    progress, cancel
        ``progress(done, total, "region")`` per chunk; ``cancel()`` checked between chunks.
    on_cluster
        Called with the Dask dashboard address (or ``None``) once a cluster is ready.
    """
    started = time.perf_counter()
    mask_config, render_config = mask_config or MaskConfig(), render_config or RenderConfig()
    config = config or RegionConfig()
    aoi = _region_aoi(source)
    grid, area = _region_grid(aoi, source, mask_config, config)
    overlap = model.spec.overlap_px if render_config.overlap_px is None else render_config.overlap_px
    plan = plan_chunks(grid, config.chunk_px, model.spec.tile_px, overlap)
    check_work(plan.chunk_px, plan.chunk_px, model.spec, render_config)
    render_config = resolve(model, replace(render_config, cog=False))  # every chunk: same backend and precision
    job = job_identity(grid, plan, model.sha256, job_settings(mask_config, render_config, config.device))
    manifest = _open_manifest(Path(outdir).expanduser(), job)  # everything checked: now the folder is made
    outdir = _check_outdir(outdir)
    tasks, manifest = _tasks(plan, grid, area, aoi.to_crs(WGS84).bounds, source, mask_config, render_config, outdir,
                             manifest)
    tick = report(progress)
    skipped = len(plan) - len(tasks)
    tick(skipped, len(plan), "region")
    outcomes = _executor(config)(tasks, model, config, cancel, on_cluster)
    manifest, rendered, reused = _collect(outcomes, manifest, outdir, lambda n: tick(skipped + n, len(plan), "region"))
    mosaic, cog = _mosaic(outdir, grid, plan, manifest, config.cog)
    empty = sum(r.status == EMPTY for r in manifest.chunks.values())
    seconds = time.perf_counter() - started
    log.info("region %s: %d chunks rendered, %d kept, %d empty in %.1f s", outdir, rendered, reused, empty, seconds)
    return RegionResult(outdir, grid, plan, mosaic, cog, rendered, reused, empty, seconds)


def _check_outdir(outdir: str | Path) -> Path:
    folder = ensure_dir(outdir, "outdir")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"cannot write into {folder}: permission denied; choose another output folder", param="outdir")
    ensure_dir(folder / CHUNKS_DIR, "outdir")
    return folder


def _region_grid(aoi: AOI, source: MaskSource, mask_config: MaskConfig, config: RegionConfig) -> tuple[Grid, AOI]:
    """The job's grid (as ``satgen mask`` makes it) and its AOI in the grid's CRS, the region limit checked.

    A region never holds its whole mask, so the region's pixel limit replaces the mask's.
    """
    if source.osm is None and source.roads is None and source.buildings is None:
        raise ConfigError(
            "a region job reads local data: give an OSM store (from 'osm extract') or a local OSM/vector file",
            param="store",
        )
    return mask_grid(aoi, replace(mask_config, max_pixels=config.max_pixels))


def _region_aoi(source: MaskSource) -> AOI:
    if source.bbox is not None and source.aoi is not None:
        raise AOIError("give either a bbox or an AOI file, not both")
    if source.bbox is not None:
        return aoi_from_bbox(source.bbox)
    if source.aoi is not None:
        return read_aoi(source.aoi)
    if source.osm is not None and is_store(source.osm):
        return aoi_from_bbox(store_extent(source.osm))
    raise AOIError("a region job needs its area: give a bbox or an AOI file (or an OSM store, whose extent is used)")


def job_settings(mask_config: MaskConfig, render_config: RenderConfig, device: str) -> dict[str, Any]:
    """Every setting that changes a chunk's pixels (the job's identity beside grid and model)."""
    render = {k: v for k, v in asdict(render_config).items() if k not in ("cog", "max_windows", "max_batch_size")}
    roads = {"classes": sorted(mask_config.roads.classes), "widths_m": dict(sorted(mask_config.roads.widths_m.items()))}
    return {**render, "roads": roads, "device": device}


def _open_manifest(outdir: Path, job: Mapping[str, Any]) -> Manifest:
    existing = load_manifest(outdir)
    if existing is None:
        return Manifest(job)
    check_same_job(existing, job, outdir)
    return existing


def _tasks(
    plan: ChunkPlan, grid: Grid, area: AOI, feature_bbox: tuple[float, float, float, float], source: MaskSource,
    mask_config: MaskConfig, render_config: RenderConfig, outdir: Path, manifest: Manifest,
) -> tuple[list[ChunkTask], Manifest]:
    """A task per chunk that touches the AOI; the others are recorded as empty (their files removed)."""
    key = job_key(manifest.job)
    tasks = []
    for chunk in plan:
        if not touches_area(grid, chunk.box, area.geometry):
            chunk_path(outdir, chunk).unlink(missing_ok=True)
            manifest = manifest.with_record(ChunkRecord.of(chunk, grid, EMPTY))
            continue
        halo_area = clip_area(area.geometry, grid, chunk.halo)
        previous = manifest.chunks.get(chunk.id)
        tasks.append(ChunkTask(chunk, grid, halo_area, feature_bbox, source, mask_config, render_config, outdir, key,
                               previous))
    return tasks, manifest


def _executor(config: RegionConfig) -> Callable[..., Iterator[ChunkOutcome]]:
    if config.workers == 0 and config.scheduler is None:
        return _in_process
    try:
        from satgen_geo.region.dask import run_on_dask  # the only place that imports Dask
    except ImportError as err:
        raise MissingDependencyError(
            f"running chunks on Dask needs the region extra ({err.name} is missing): pip install 'satgen-geo[region]', "
            "or run the chunks in this process (0 workers)", param="cluster_workers",
        ) from None
    return run_on_dask


def _in_process(
    tasks: Sequence[ChunkTask], model: LoadedModel, config: RegionConfig, cancel: CancelFn | None,
    on_cluster: Callable[[str | None], None] | None = None,
) -> Iterator[ChunkOutcome]:
    """Run the chunks one after the other in this process."""
    if on_cluster is not None:
        on_cluster(None)
    for task in tasks:
        check_cancel(cancel)
        yield run_chunk(task, model, cancel)


def _collect(
    outcomes: Iterator[ChunkOutcome], manifest: Manifest, outdir: Path, tick: Callable[[int], None]
) -> tuple[Manifest, int, int]:
    """Record each finished chunk (the manifest saved every few seconds and at the end); ``(manifest, rendered, reused)``."""
    rendered = reused = 0
    last_save = time.monotonic()
    try:
        for outcome in outcomes:
            manifest = manifest.with_record(outcome.record)
            rendered, reused = rendered + outcome.rendered, reused + (not outcome.rendered)
            tick(rendered + reused)
            if time.monotonic() - last_save > _SAVE_EVERY_S:
                save_manifest(outdir, manifest)
                last_save = time.monotonic()
    except BaseException:
        _save_after_failure(outdir, manifest)
        raise
    finally:
        _clean_work(outdir)
    save_manifest(outdir, manifest)
    return manifest, rendered, reused


def _save_after_failure(outdir: Path, manifest: Manifest) -> None:
    """Keep the chunks finished so far for a resume, without hiding the error that stopped the job."""
    try:
        save_manifest(outdir, manifest)
    except (SatgenError, OSError) as err:
        log.error("could not save the manifest of %s after the job stopped: %s", outdir, err)


def _clean_work(outdir: Path) -> None:
    """Remove the job's scratch folder and temporary chunk files (no chunk of this job is running)."""
    shutil.rmtree(outdir / WORK_DIR, ignore_errors=True)
    for partial in (outdir / CHUNKS_DIR).glob(".*.partial*"):
        partial.unlink(missing_ok=True)


def _mosaic(outdir: Path, grid: Grid, plan: ChunkPlan, manifest: Manifest, cog: bool) -> tuple[Path | None, Path | None]:
    """The VRT over every done chunk (and the COG); ``None`` when no chunk has pixels."""
    done = [c for c in plan if (r := manifest.chunks.get(c.id)) is not None and r.status == DONE]
    if not done:
        log.warning("no chunk of the region touches the area: no mosaic written")
        return None, None
    with rasterio.open(chunk_path(outdir, done[0])) as first:
        tags = first.tags()
        bands = [(first.descriptions[i] or "", ci.name.capitalize()) for i, ci in enumerate(first.colorinterp)]
    sources = [Source(chunk_path(outdir, c), c.box) for c in done]
    vrt = write_vrt(outdir / MOSAIC_VRT, grid, bands, sources, metadata=tags)
    return vrt, write_cog(vrt, outdir / MOSAIC_COG) if cog else None
