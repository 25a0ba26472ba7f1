"""One chunk of a region job, as a worker runs it: halo mask → input hash → render (or reuse).

:func:`run_chunk` is plain Python (no Dask): the Dask executor calls it on a worker with the
worker's model, and the in-process executor calls it in a loop. It

1. reads the features near the chunk's halo (an R-tree query on the OSM store, or a
   bbox-filtered read of a local file, :data:`ROAD_REACH_M` beyond the halo so that a road
   just outside still paints its edge), keeps those a whole-area mask reads (they intersect
   the AOI's EPSG:4326 bounding box), and draws the halo's mask exactly as ``satgen mask``
   draws the whole area (same grid, same rasterizer);
2. hashes that mask with the job's identity into the chunk's input hash;
3. if the manifest's record of the chunk has the same input hash and the chunk file still has
   the recorded checksum, returns that record untouched (resume, incremental re-render);
4. else places the halo mask on the whole grid (a VRT) and renders the chunk with the
   engine's ``region`` mechanism, so its windows, weights and seeds are those of a
   whole-area render, then returns the new file's checksum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import rasterio
import shapely
from pyproj import CRS

from satgen_geo._atomic import ensure_dir, scratch_dir
from satgen_geo.engine import RenderConfig, render
from satgen_geo.grid import AOI, Grid
from satgen_geo.mask import MaskConfig, MaskSource, load_features, write_mask
from satgen_geo.model.checkpoint import file_sha256
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.osm.features import select_features
from satgen_geo.osm.store import is_store, read_store
from satgen_geo.progress import CancelFn
from satgen_geo.rasterize import BAND_NAMES, prepare_shapes
from satgen_geo.region.chunks import Chunk, PixelBox, box_bounds, box_grid
from satgen_geo.region.manifest import DONE, ChunkRecord, input_hash
from satgen_geo.region.mosaic import Source, write_vrt

log = logging.getLogger(__name__)

CHUNKS_DIR, WORK_DIR = "chunks", ".satgen-work"
#: How far outside a window a road's centreline can still draw: half the widest road
#: (:func:`satgen_geo.osm.roads.road_widths_m` clips widths to 60 m). Features are read this
#: much beyond the halo so a road just outside it still paints its edge inside.
ROAD_REACH_M = 30.0


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs for one chunk (picklable; the model comes from the worker).

    ``area`` is the job's AOI in the grid's CRS, clipped to the chunk's halo (a small payload
    whatever the AOI's size); ``feature_bbox`` is the AOI's EPSG:4326 bounding box, the
    features of a whole-area mask are those that intersect it (as ``satgen mask`` reads
    them); ``previous`` is the manifest's record of the chunk, if any.
    """

    chunk: Chunk
    grid: Grid
    area: shapely.Geometry
    feature_bbox: tuple[float, float, float, float]
    source: MaskSource
    mask_config: MaskConfig
    render_config: RenderConfig
    outdir: Path
    job_key: str
    previous: ChunkRecord | None = None


@dataclass(frozen=True)
class ChunkOutcome:
    """What :func:`run_chunk` did: the chunk's record, and whether it was rendered (or reused)."""

    record: ChunkRecord
    rendered: bool


def chunk_path(outdir: Path, chunk: Chunk) -> Path:
    """The chunk's GeoTIFF: ``OUTDIR/chunks/<id>.tif``."""
    return outdir / CHUNKS_DIR / f"{chunk.id}.tif"


def run_chunk(task: ChunkTask, model: LoadedModel, cancel: CancelFn | None = None) -> ChunkOutcome:
    """Build the chunk's halo mask, hash it, and render the chunk unless its output is current."""
    chunk, grid = task.chunk, task.grid
    output = chunk_path(task.outdir, chunk)
    with scratch_dir(ensure_dir(task.outdir / WORK_DIR, "outdir")) as tmp:
        halo_mask = tmp / f"{chunk.id}-mask.tif"
        _write_halo_mask(task, halo_mask)
        with rasterio.open(halo_mask) as src:
            parts = [src.read().tobytes(), src.dataset_mask().tobytes()]
            tags = src.tags()
        digest = input_hash(task.job_key, chunk, parts)
        if task.previous is not None and _is_current(task.previous, digest, output):
            log.debug("chunk %s: inputs unchanged and output intact, kept", chunk.id)
            return ChunkOutcome(task.previous, rendered=False)
        placed = write_vrt(tmp / f"{chunk.id}-mask.vrt", grid, [(name, None) for name in BAND_NAMES],
                           [Source(halo_mask, chunk.halo)], metadata=tags)
        render(placed, output, model, task.render_config, cancel=cancel, region=chunk.box.window)
    record = ChunkRecord.of(chunk, grid, DONE, path=f"{CHUNKS_DIR}/{output.name}", checksum=file_sha256(output),
                            input_hash=digest)
    return ChunkOutcome(record, rendered=True)


def _write_halo_mask(task: ChunkTask, path: Path) -> None:
    """Draw the mask under the chunk's halo, from the features that intersect it."""
    halo_grid = box_grid(task.grid, task.chunk.halo)
    left, bottom, right, top = halo_grid.bounds
    reach = ROAD_REACH_M + halo_grid.gsd_m
    raw = _read_features(task.source, (left - reach, bottom - reach, right + reach, top + reach), task.grid.crs)
    raw = raw[shapely.intersects(raw.geometry.values, shapely.box(*task.feature_bbox))]  # as a whole-area mask reads
    features = select_features(raw, task.mask_config.roads).to_crs(task.grid.crs)
    write_mask(path, halo_grid, prepare_shapes(features), task.area, task.source.describe(), task.mask_config.block_px,
               attribution=task.source.attribution())


def _read_features(source: MaskSource, bounds: tuple[float, float, float, float], crs: CRS) -> gpd.GeoDataFrame:
    """Features intersecting ``bounds`` (in ``crs``): an R-tree query on a store, else a bbox read."""
    if source.osm is not None and is_store(source.osm):
        return read_store(source.osm, bounds, crs)
    return load_features(source, AOI(shapely.box(*bounds), crs))[0]


def _is_current(previous: ChunkRecord, digest: str, output: Path) -> bool:
    """The recorded output is still valid: same inputs, file present with its checksum."""
    if previous.status != DONE or previous.input_hash != digest or not output.is_file():
        return False
    if file_sha256(output) != previous.checksum:
        log.info("chunk %s: file %s does not match its checksum, rendering it again", previous.id, output.name)
        return False
    return True


def clip_area(area: shapely.Geometry, grid: Grid, box: PixelBox) -> shapely.Geometry:
    """``area`` clipped to ``box`` of ``grid`` (pixel centres inside the box keep their inside/outside)."""
    return shapely.clip_by_rect(area, *box_bounds(grid, box))

