"""Pure: a tile source's render grid on a fixed global lattice, and which grid pixels a tile needs.

The render grid of a source is in the UTM zone of the source's centre, at the model's pixel
size, with its edges on multiples of the chunk side (``chunk_px × gsd_m`` metres from the
zone's origin): a lattice fixed for the whole zone, so the grid, its window lattice, every
window's seed and so every pixel depend only on the source and the settings, never on which
tile was asked for first. A tile maps to a :class:`TileRead`: the box of grid pixels under
it (a margin for the resampling kernel included), the power-of-two reduction at which that
box is read (chunk overviews, for zooms below the native one), and the chunks it touches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mercantile
from affine import Affine
from pyproj import CRS
from rasterio.warp import transform_bounds

from satgen_geo.grid import AOI, WGS84, Grid, utm_crs
from satgen_geo.region.chunks import Chunk, ChunkPlan, PixelBox
from satgen_geo.tiles.xyz import ground_px_m, tile_bounds, tile_centre_lat

WEB_MERCATOR = CRS.from_epsg(3857)
#: Grid pixels added around a tile's footprint so that bilinear resampling at its edge
#: reads the same neighbours as the tile beside it (in reduced pixels).
MARGIN_PX = 2


def lattice_grid(area: AOI, gsd_m: float, chunk_px: int) -> Grid:
    """The render grid covering ``area``: its UTM zone, ``gsd_m`` pixels, edges on the chunk lattice."""
    crs = utm_crs(area)
    minx, miny, maxx, maxy = area.to_crs(crs).bounds
    step = chunk_px * gsd_m
    x0, x1 = math.floor(minx / step), math.ceil(maxx / step)
    y0, y1 = math.floor(miny / step), math.ceil(maxy / step)
    cols, rows = max(x1 - x0, 1), max(y1 - y0, 1)
    transform = Affine(gsd_m, 0.0, x0 * step, 0.0, -gsd_m, y1 * step)
    return Grid(crs, transform, cols * chunk_px, rows * chunk_px)


@dataclass(frozen=True)
class TileRead:
    """What a tile reads: grid pixels ``box`` at ``reduction`` (1, 2, 4, …) from ``chunks``."""

    tile: mercantile.Tile
    box: PixelBox
    reduction: int
    chunks: tuple[Chunk, ...]

    def transform(self, grid: Grid) -> Affine:
        """The transform of the reduced box's pixels."""
        return grid.transform * Affine.translation(self.box.col_off, self.box.row_off) * Affine.scale(self.reduction)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the reduced box."""
        return self.box.height // self.reduction, self.box.width // self.reduction


def tile_read(tile: mercantile.Tile, grid: Grid, plan: ChunkPlan) -> TileRead | None:
    """The grid pixels, reduction and chunks under ``tile``; ``None`` when it misses the grid.

    The reduction is the largest power of two at most the tile's ground pixel over the
    grid's (capped so that it divides the chunk side); the box is aligned to it, so a
    reduced pixel always averages the same grid pixels whichever tile reads it.
    """
    reduction = _reduction(ground_px_m(tile.z, tile_centre_lat(tile)) / grid.gsd_m, plan.chunk_px)
    left, bottom, right, top = transform_bounds(WEB_MERCATOR, grid.crs, *tile_bounds(tile), densify_pts=21)
    inverse = ~grid.transform
    col0, row0 = inverse * (left, top)
    col1, row1 = inverse * (right, bottom)
    margin = MARGIN_PX * reduction
    c0, r0 = _down(col0 - margin, reduction), _down(row0 - margin, reduction)
    c1, r1 = _up(col1 + margin, reduction), _up(row1 + margin, reduction)
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, grid.width), min(r1, grid.height)
    if c0 >= c1 or r0 >= r1:
        return None
    box = PixelBox(c0, r0, c1 - c0, r1 - r0)
    size = plan.chunk_px
    chunks = tuple(plan.chunk(row, col) for row in range(r0 // size, (r1 - 1) // size + 1)
                   for col in range(c0 // size, (c1 - 1) // size + 1))
    return TileRead(tile, box, reduction, chunks)


def overlap(a: PixelBox, b: PixelBox) -> PixelBox | None:
    """The pixels two boxes share, or ``None``."""
    c0, r0 = max(a.col_off, b.col_off), max(a.row_off, b.row_off)
    c1 = min(a.col_off + a.width, b.col_off + b.width)
    r1 = min(a.row_off + a.height, b.row_off + b.height)
    return PixelBox(c0, r0, c1 - c0, r1 - r0) if c0 < c1 and r0 < r1 else None


def area_bounds(area: AOI) -> tuple[float, float, float, float]:
    """The ``(west, south, east, north)`` EPSG:4326 bounds of ``area``."""
    west, south, east, north = area.to_crs(WGS84).bounds
    return float(west), float(south), float(east), float(north)


def _reduction(ratio: float, chunk_px: int) -> int:
    """The largest power of two at most ``ratio`` (at least 1) that divides ``chunk_px``."""
    reduction = 1
    while reduction * 2 <= ratio and chunk_px % (reduction * 2) == 0:
        reduction *= 2
    return reduction


def _down(value: float, step: int) -> int:
    return math.floor(value / step) * step


def _up(value: float, step: int) -> int:
    return math.ceil(value / step) * step

