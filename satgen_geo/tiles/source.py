"""A tile source: OSM data + model → XYZ tiles of synthetic imagery, rendered on demand and cached.

:class:`TileSource` holds one source's render grid (:func:`~satgen_geo.tiles.lattice.lattice_grid`:
its UTM zone, the model's pixel size, edges on a global lattice), the grid's chunk plan
(:mod:`satgen_geo.region.chunks`, the plan region jobs use) and its chunk cache
(:class:`~satgen_geo.tiles.cache.ChunkCache`). A tile

1. maps to the grid pixels under it and the chunks they lie in (:func:`~satgen_geo.tiles.lattice.tile_read`);
   a tile beyond the source's area is ``None`` (transparent) without any work;
2. has its missing chunks rendered exactly as a region job renders them
   (:func:`satgen_geo.region.job.run_chunk`: the halo's mask from the source, then the engine
   over the whole grid's window lattice), so every chunk equals the same pixels of one render
   of the whole grid and tiles meet without seams;
3. is read from the cached chunks (their overviews below the native zoom) and reprojected to
   Web Mercator with :func:`rasterio.warp.reproject` (bilinear, alpha outside the area).

Zooms: the native zoom is the first whose pixels are at most the model's GSD at the area's
centre; tiles are served from ``min_zoom`` (default 3 below native) to ``max_zoom`` (2 above).
Below ``min_zoom`` a tile is served only when its chunks are all cached; rendering a whole
region for one low-zoom tile is refused (:class:`TileZoomError`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from satgen_geo._atomic import ensure_dir
from satgen_geo._cache import cache_dir
from satgen_geo._validate import check_int
from satgen_geo.engine import RenderConfig, check_work, resolve
from satgen_geo.errors import AOIError, ConfigError, LimitError
from satgen_geo.grid import AOI
from satgen_geo.mask import MaskConfig, MaskSource, mask_area
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.progress import CancelFn
from satgen_geo.region.chunks import Chunk, ChunkPlan, snap_chunk_px, touches_area
from satgen_geo.region.job import ChunkTask, clip_area, run_chunk
from satgen_geo.region.manifest import job_identity, job_key
from satgen_geo.region.run import job_settings
from satgen_geo.tiles.cache import ChunkCache
from satgen_geo.tiles.lattice import WEB_MERCATOR, TileRead, area_bounds, lattice_grid, overlap, tile_read
from satgen_geo.tiles.xyz import MAX_ZOOM, TILE_PX, TileError, check_tile, native_zoom, tile_transform

log = logging.getLogger(__name__)

#: Zoom levels served below and above the native zoom by default.
ZOOMS_BELOW, ZOOMS_ABOVE = 3, 2
#: What every tile's attribution adds to the data's.
SYNTHETIC_NOTE = "synthetic imagery (satgen-geo), not a photograph"


class TileZoomError(ConfigError):
    """A tile below the minimum zoom whose chunks are not all cached (rendering it would render a region)."""


@dataclass(frozen=True)
class TileConfig:
    """How a tile source cuts, caches and bounds its work.

    Parameters
    ----------
    chunk_px
        Render chunk side in pixels (rounded down to a multiple of the window stride; 256 to 65,536).
    min_zoom, max_zoom
        Zooms served; ``None``: 3 below and 2 above the native zoom.
    cache_dir
        Root of the chunk cache; ``None``: ``<satgen cache>/tiles``.
    cache_mb
        Size of the chunk cache (every source under the root together), in MiB.
    max_render_chunks
        Most chunks one tile request may render (a tile at or above ``min_zoom`` needs at most 4 or so).
    max_read_chunks
        Most cached chunks one tile may read (low zooms served from overviews).
    max_pixels
        The largest render grid accepted, in pixels (the source's area at the model's GSD).
    """

    chunk_px: int = 1024
    min_zoom: int | None = None
    max_zoom: int | None = None
    cache_dir: str | Path | None = None
    cache_mb: int = 2048
    max_render_chunks: int = 16
    max_read_chunks: int = 64
    max_pixels: int = 10_000_000_000

    def __post_init__(self) -> None:
        check_int(self.chunk_px, "chunk_px", "chunk size (px)", minimum=256, maximum=65_536)
        for name in ("min_zoom", "max_zoom"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), "zoom", name.replace("_", " "), minimum=0, maximum=MAX_ZOOM)
        if self.min_zoom is not None and self.max_zoom is not None and self.min_zoom > self.max_zoom:
            raise ConfigError(f"minimum zoom {self.min_zoom} is above maximum zoom {self.max_zoom}", param="zoom")
        check_int(self.cache_mb, "tile_cache", "tile cache size (MiB)")
        check_int(self.max_render_chunks, "max_render_chunks", "chunks one tile may render")
        check_int(self.max_read_chunks, "max_render_chunks", "chunks one tile may read")
        check_int(self.max_pixels, "max_pixels", "render grid pixel limit")


class TileSource:
    """XYZ tiles of one source (see the module docstring); thread-safe, one per server.

    Parameters
    ----------
    source
        Area and features: an OSM file, store or vector files (their extent is the area unless
        a bbox or AOI is given), or a bbox with Overpass.
    model
        The model; its GSD is the grid's pixel size.
    config, render_config, mask_config
        Tiling and cache (:class:`TileConfig`), the engine's settings (``auto`` backend and
        precision are resolved once here), road classes.
    """

    def __init__(self, source: MaskSource, model: LoadedModel, config: TileConfig | None = None,
                 render_config: RenderConfig | None = None, mask_config: MaskConfig | None = None) -> None:
        self.source, self.model, self.config = source, model, config or TileConfig()
        spec = model.spec
        self.mask_config = replace(mask_config or MaskConfig(), gsd_m=spec.gsd_m)
        render_config = render_config or RenderConfig()
        overlap_px = spec.overlap_px if render_config.overlap_px is None else render_config.overlap_px
        chunk_px = snap_chunk_px(self.config.chunk_px, spec.tile_px, overlap_px)
        self.area = _source_area(source)
        self.grid = lattice_grid(self.area, spec.gsd_m, chunk_px)
        _check_pixels(self.grid.width * self.grid.height, self.config.max_pixels)
        self.plan = ChunkPlan(self.grid.height, self.grid.width, chunk_px, spec.tile_px, overlap_px)
        check_work(chunk_px, chunk_px, spec, render_config)
        self.render_config = resolve(model, replace(render_config, cog=True, overviews=True))
        self.area_metric = self.area.to_crs(self.grid.crs)
        self.bounds = area_bounds(self.area)
        identity = job_identity(self.grid, self.plan, model.sha256, {
            **job_settings(self.mask_config, self.render_config, str(model.device)), "source": _fingerprint(source)})
        self.key = job_key(identity)[:24]
        root = Path(self.config.cache_dir).expanduser() if self.config.cache_dir else cache_dir() / "tiles"
        self.cache = ChunkCache(root, self.key, self.config.cache_mb * 1024 * 1024)
        west, south, east, north = self.bounds
        self.native_zoom = native_zoom(spec.gsd_m, (south + north) / 2.0)
        self.min_zoom = self.config.min_zoom if self.config.min_zoom is not None else max(self.native_zoom - ZOOMS_BELOW, 0)
        self.max_zoom = self.config.max_zoom if self.config.max_zoom is not None else min(self.native_zoom + ZOOMS_ABOVE,
                                                                                           MAX_ZOOM)
        self._in_area = lru_cache(maxsize=65_536)(self._chunk_in_area)
        log.info("tile source %s: %d×%d px grid in %s, %d chunks of %d px, zooms %d-%d (native %d), cache %s",
                 source.describe(), self.grid.width, self.grid.height, self.grid.crs.to_string(), len(self.plan), chunk_px,
                 self.min_zoom, self.max_zoom, self.native_zoom, self.cache.folder)

    @cached_property
    def attribution(self) -> str:
        """The data's attribution and a note that the imagery is synthetic."""
        return f"{self.source.attribution()}; {SYNTHETIC_NOTE}"

    def tilejson(self, tiles_url: str) -> dict[str, Any]:
        """A TileJSON 3.0.0 document for tiles at ``tiles_url`` (with ``{z}/{x}/{y}`` in it)."""
        west, south, east, north = self.bounds
        return {
            "tilejson": "3.0.0", "name": "satgen-geo synthetic imagery", "tiles": [tiles_url], "scheme": "xyz",
            "minzoom": self.min_zoom, "maxzoom": self.max_zoom, "bounds": [west, south, east, north],
            "center": [(west + east) / 2.0, (south + north) / 2.0, self.native_zoom], "attribution": self.attribution,
            "description": f"{SYNTHETIC_NOTE}; native zoom {self.native_zoom} ({self.model.spec.gsd_m:g} m/px)",
        }

    def tile_read(self, z: int, x: int, y: int) -> TileRead | None:
        """What tile ``z/x/y`` reads, only the chunks in the area kept; ``None`` outside the area.

        Raises
        ------
        TileError
            For a tile that does not exist or lies above ``max_zoom``.
        """
        tile = check_tile(z, x, y)
        if z > self.max_zoom:
            raise TileError(f"zoom {z} is above this source's maximum zoom {self.max_zoom}", param="zoom")
        read = tile_read(tile, self.grid, self.plan)
        if read is None or not touches_area(self.grid, read.box, self.area_metric.geometry):
            return None
        chunks = tuple(c for c in read.chunks if self._in_area(c))
        return replace(read, chunks=chunks) if chunks else None

    def missing(self, read: TileRead) -> list[Chunk]:
        """The chunks of ``read`` not in the cache."""
        return [chunk for chunk in read.chunks if not self.cache.cached(chunk)]

    def ensure(self, read: TileRead, cancel: CancelFn | None = None) -> int:
        """Render the missing chunks of ``read`` (each once, however many ask); return how many this call rendered.

        Raises
        ------
        TileZoomError
            Below ``min_zoom`` when a chunk is missing.
        LimitError
            When the tile reads more than ``max_read_chunks`` or would render more than ``max_render_chunks``.
        """
        z = read.tile.z
        if len(read.chunks) > self.config.max_read_chunks:
            raise LimitError(f"tile {z}/{read.tile.x}/{read.tile.y} covers {len(read.chunks)} chunks, over the limit of "
                             f"{self.config.max_read_chunks}; zoom in, or raise the chunks-per-tile limit",
                             param="max_render_chunks")
        missing = self.missing(read)
        if missing and z < self.min_zoom:
            raise TileZoomError(
                f"zoom {z} is below the minimum zoom {self.min_zoom} for tiles rendered on demand and {len(missing)} of "
                f"its {len(read.chunks)} chunks are not rendered yet; zoom in to {self.min_zoom} or more, or export the "
                "area's tiles first (which renders every chunk)", param="zoom")
        if len(missing) > self.config.max_render_chunks:
            raise LimitError(f"tile {z}/{read.tile.x}/{read.tile.y} needs {len(missing)} chunks rendered, over the limit "
                             f"of {self.config.max_render_chunks}; zoom in, or raise the chunks-per-tile limit",
                             param="max_render_chunks")
        return sum(self.cache.ensure(chunk, partial(self._render, chunk), cancel) for chunk in missing)

    def read(self, read: TileRead) -> np.ndarray:
        """The tile's ``(4, 256, 256)`` uint8 RGBA pixels from its cached chunks (alpha 0 outside the area)."""
        rows, cols = read.shape
        src = np.zeros((4, rows, cols), dtype=np.uint8)
        f = read.reduction
        for chunk in read.chunks:
            part = overlap(read.box, chunk.box)
            if part is None:
                continue
            window = Window(part.col_off - chunk.box.col_off, part.row_off - chunk.box.row_off, part.width, part.height)
            shape = (part.height // f, part.width // f)
            r0, c0 = (part.row_off - read.box.row_off) // f, (part.col_off - read.box.col_off) // f
            with rasterio.open(self.cache.path(chunk)) as ds:
                src[:3, r0:r0 + shape[0], c0:c0 + shape[1]] = ds.read((1, 2, 3), window=window, out_shape=(3, *shape),
                                                                      resampling=Resampling.average)
                src[3, r0:r0 + shape[0], c0:c0 + shape[1]] = ds.read_masks(1, window=window, out_shape=shape,
                                                                           resampling=Resampling.nearest)
            self.cache.touch(chunk)
        dst = np.zeros((4, TILE_PX, TILE_PX), dtype=np.uint8)
        reproject(src, dst, src_transform=read.transform(self.grid), src_crs=self.grid.crs,
                  dst_transform=tile_transform(read.tile), dst_crs=WEB_MERCATOR, resampling=Resampling.bilinear,
                  src_alpha=4, dst_alpha=4)
        return dst

    def tile(self, z: int, x: int, y: int, cancel: CancelFn | None = None) -> np.ndarray | None:
        """Tile ``z/x/y`` as ``(4, 256, 256)`` RGBA, rendering missing chunks; ``None`` outside the area."""
        read = self.tile_read(z, x, y)
        if read is None:
            return None
        self.ensure(read, cancel)
        return self.read(read)

    def _chunk_in_area(self, chunk: Chunk) -> bool:
        return touches_area(self.grid, chunk.box, self.area_metric.geometry)

    def _render(self, chunk: Chunk, cancel: CancelFn | None) -> None:
        folder = ensure_dir(self.cache.path(chunk).parent, "tile_cache")
        task = ChunkTask(chunk, self.grid, clip_area(self.area_metric.geometry, self.grid, chunk.halo), self.bounds,
                         self.source, self.mask_config, self.render_config, folder.parent, self.key)
        run_chunk(task, self.model, cancel)
        log.debug("tile source %s: rendered chunk %s", self.key, chunk.id)


def _source_area(source: MaskSource) -> AOI:
    area = mask_area(source)
    if area is None:
        raise AOIError("the tile source's files declare no extent; give its area as a bbox or an AOI file", param="bbox")
    return area


def _check_pixels(pixels: int, limit: int) -> None:
    if pixels > limit:
        raise LimitError(f"the source's area at the model's pixel size is a {pixels / 1e6:,.0f}-megapixel grid, over the "
                         f"limit of {limit / 1e6:,.0f} megapixels; give a smaller area, or raise the pixel limit",
                         param="max_pixels")


def _fingerprint(source: MaskSource) -> dict[str, Any]:
    """What identifies the source's data: the files' names, sizes and modification times, or the Overpass server."""
    files = {concept: _file_stamp(Path(path)) for concept, path in source.inputs().items()}
    bbox = list(source.bbox) if source.bbox is not None else None
    return {"files": files, "bbox": bbox, "overpass": None if source.files() else source.overpass.url}


def _file_stamp(path: Path) -> list[Any]:
    stat = os.stat(path)
    return [path.name, stat.st_size, stat.st_mtime_ns]
