"""Pure chunk plan: a region's output grid cut into chunks on the window lattice, each with its halo.

A region render is split into square chunks of ``chunk_px`` (a multiple of the window stride,
so chunk borders sit on the window lattice). Each chunk is rendered with the engine's
``region`` mechanism over the *whole* grid's window lattice, so its windows, their blend
weights and their seeds are those of a single render of the whole area; the render reads
only the mask under the windows that touch the chunk, which is the chunk's **halo** window.
A mask that holds the right pixels inside the halo is therefore all a chunk needs, and the
chunk's pixels equal the same pixels of a whole-area render.

Windows start at ``k * stride`` (``stride = tile_px - overlap_px``) for ``k = 0 .. n - 1``, the
fewest that cover the axis (as :func:`satgen_geo.tiling.plan_windows` lays them out).
Pure: integers, frozen dataclasses, shapely for the AOI test; no file IO.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import shapely
from affine import Affine
from rasterio.windows import Window

from satgen_geo._validate import check_int
from satgen_geo.errors import ConfigError
from satgen_geo.grid import Grid

#: Accepted chunk sides (px): at least one window, at most a 64k² chunk.
MIN_CHUNK_PX, MAX_CHUNK_PX = 256, 65_536


@dataclass(frozen=True)
class PixelBox:
    """A rectangle of grid pixels: columns ``[col_off, col_off + width)``, rows likewise."""

    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def window(self) -> Window:
        """The same rectangle as a rasterio window."""
        return Window(self.col_off, self.row_off, self.width, self.height)

    def contains(self, other: PixelBox) -> bool:
        """True when ``other`` lies inside this box."""
        return (
            self.col_off <= other.col_off and other.col_off + other.width <= self.col_off + self.width
            and self.row_off <= other.row_off and other.row_off + other.height <= self.row_off + self.height
        )


@dataclass(frozen=True)
class Chunk:
    """One chunk: its position in the chunk grid, its pixels and the halo its windows read."""

    row: int
    col: int
    box: PixelBox
    halo: PixelBox

    @property
    def id(self) -> str:
        """A stable name, ``r0003_c0012`` (also the chunk file's stem)."""
        return f"r{self.row:04d}_c{self.col:04d}"


@dataclass(frozen=True)
class ChunkPlan:
    """A ``height`` × ``width`` px grid cut into chunks of ``chunk_px``; iterate it for :class:`Chunk`.

    Build it with :func:`plan_chunks`, which rounds the chunk side to the lattice.
    """

    height: int
    width: int
    chunk_px: int
    tile_px: int = 256
    overlap_px: int = 128
    rows: int = field(init=False)
    cols: int = field(init=False)

    def __post_init__(self) -> None:
        check_int(self.height, "region", "region height (px)")
        check_int(self.width, "region", "region width (px)")
        check_int(self.tile_px, "region", "window size (px)")
        check_int(self.overlap_px, "overlap_px", "window overlap (px)", minimum=0, maximum=self.tile_px - 1)
        check_int(self.chunk_px, "chunk_px", "chunk size (px)", minimum=MIN_CHUNK_PX, maximum=MAX_CHUNK_PX)
        if self.chunk_px % self.stride:
            raise ConfigError(
                f"chunk size {self.chunk_px} px is not a multiple of the window stride {self.stride} px "
                f"(window {self.tile_px} px, overlap {self.overlap_px} px); use {self.chunk_px // self.stride * self.stride}",
                param="chunk_px",
            )
        object.__setattr__(self, "rows", math.ceil(self.height / self.chunk_px))
        object.__setattr__(self, "cols", math.ceil(self.width / self.chunk_px))

    @property
    def stride(self) -> int:
        """Distance between neighbouring windows, ``tile_px - overlap_px``."""
        return self.tile_px - self.overlap_px

    def __len__(self) -> int:
        return self.rows * self.cols

    def __iter__(self) -> Iterator[Chunk]:
        for row in range(self.rows):
            for col in range(self.cols):
                yield self.chunk(row, col)

    def chunk(self, row: int, col: int) -> Chunk:
        """The chunk at chunk-grid position ``(row, col)``."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise ConfigError(f"chunk ({row}, {col}) is outside the {self.rows}×{self.cols} chunk grid", param="region")
        r0, r1 = self._span(row, self.height)
        c0, c1 = self._span(col, self.width)
        h0, h1 = self._halo(r0, r1, self.height)
        w0, w1 = self._halo(c0, c1, self.width)
        return Chunk(row, col, PixelBox(c0, r0, c1 - c0, r1 - r0), PixelBox(w0, h0, w1 - w0, h1 - h0))

    def _span(self, index: int, length: int) -> tuple[int, int]:
        start = index * self.chunk_px
        return start, min(start + self.chunk_px, length)

    def _halo(self, start: int, stop: int, length: int) -> tuple[int, int]:
        """Pixels ``[start', stop')`` under the windows that touch ``[start, stop)`` on one axis."""
        stride, tile = self.stride, self.tile_px
        last = axis_windows(length, tile, stride) - 1
        first_k = max(0, (start - tile) // stride + 1)  # first window whose end passes ``start``
        last_k = min(last, (stop - 1) // stride)  # last window that starts before ``stop``
        return first_k * stride, min(last_k * stride + tile, length)


def axis_windows(length: int, tile_px: int, stride: int) -> int:
    """How many lattice windows cover an axis of ``length`` px (at least one)."""
    return max(1, -((tile_px - length) // stride) + 1)


def plan_chunks(grid: Grid, chunk_px: int, tile_px: int = 256, overlap_px: int = 128) -> ChunkPlan:
    """The chunk plan of ``grid``, with ``chunk_px`` rounded down to a multiple of the window stride."""
    return ChunkPlan(grid.height, grid.width, snap_chunk_px(chunk_px, tile_px, overlap_px), tile_px, overlap_px)


def snap_chunk_px(chunk_px: int, tile_px: int = 256, overlap_px: int = 128) -> int:
    """``chunk_px`` rounded down to a multiple of the window stride (at least :data:`MIN_CHUNK_PX`)."""
    check_int(chunk_px, "chunk_px", "chunk size (px)", minimum=MIN_CHUNK_PX, maximum=MAX_CHUNK_PX)
    check_int(overlap_px, "overlap_px", "window overlap (px)", minimum=0, maximum=max(tile_px - 1, 0))
    stride = tile_px - overlap_px
    return max(chunk_px // stride * stride, -(-MIN_CHUNK_PX // stride) * stride)


def box_grid(grid: Grid, box: PixelBox) -> Grid:
    """The sub-grid of ``grid`` covering ``box`` (same CRS and pixel size)."""
    transform = grid.transform * Affine.translation(box.col_off, box.row_off)
    return Grid(grid.crs, transform, box.width, box.height)


def box_bounds(grid: Grid, box: PixelBox) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of ``box`` in the grid's CRS."""
    return box_grid(grid, box).bounds


def touches_area(grid: Grid, box: PixelBox, area: shapely.Geometry) -> bool:
    """Whether any pixel centre of ``box`` may lie inside ``area`` (in the grid's CRS).

    ``False`` means the box is certainly empty (every pixel outside the area): the test is
    against the rectangle spanned by the box's first and last pixel centres.
    """
    left, bottom, right, top = box_bounds(grid, box)
    half = grid.gsd_m / 2.0
    x0, y0, x1, y1 = left + half, bottom + half, right - half, top - half
    if x0 < x1 and y0 < y1:
        centres = shapely.box(x0, y0, x1, y1)
    else:  # one pixel wide or tall: a line, or a point
        centres = shapely.LineString([(x0, y0), (x1, y1)]) if (x0, y0) != (x1, y1) else shapely.Point(x0, y0)
    return bool(shapely.intersects(area, centres))
