"""The render grid on the global lattice, and the pixels and chunks a tile reads."""

from __future__ import annotations

import mercantile
import pytest
from shapely.geometry import box

from satgen_geo.grid import AOI, WGS84
from satgen_geo.region.chunks import ChunkPlan
from satgen_geo.tiles.lattice import lattice_grid, tile_read

AREA = AOI(box(26.93, 60.52, 26.97, 60.54), WGS84)


def test_grid_edges_lie_on_the_global_lattice() -> None:
    grid = lattice_grid(AREA, 1.0, 512)
    assert grid.crs.to_epsg() == 32635  # the UTM zone of the area's centre
    assert grid.transform.c % 512 == 0 and grid.transform.f % 512 == 0
    assert grid.width % 512 == 0 and grid.height % 512 == 0
    metric = AREA.to_crs(grid.crs).bounds
    left, bottom, right, top = grid.bounds
    assert left <= metric[0] and bottom <= metric[1] and right >= metric[2] and top >= metric[3]


def test_overlapping_areas_share_pixel_edges() -> None:
    other = lattice_grid(AOI(box(26.95, 60.53, 26.99, 60.55), WGS84), 1.0, 512)
    grid = lattice_grid(AREA, 1.0, 512)
    assert (grid.transform.c - other.transform.c) % 512 == 0 and (grid.transform.f - other.transform.f) % 512 == 0


def _plan(chunk_px: int = 512) -> tuple:
    grid = lattice_grid(AREA, 1.0, chunk_px)
    return grid, ChunkPlan(grid.height, grid.width, chunk_px, 256, 128)


def test_native_tile_reads_full_resolution_pixels_of_one_or_few_chunks() -> None:
    grid, plan = _plan()
    read = tile_read(mercantile.tile(26.95, 60.53, 17), grid, plan)
    assert read is not None and read.reduction == 1
    assert 150 < read.box.width < 170  # 256 px of 0.59 m plus the margin, in 1 m pixels
    assert 1 <= len(read.chunks) <= 4
    for chunk in read.chunks:
        assert chunk.box.col_off < read.box.col_off + read.box.width and read.box.col_off < chunk.box.col_off + chunk.box.width


@pytest.mark.parametrize(("zoom", "reduction"), [(16, 1), (15, 2), (14, 4), (12, 16)])  # 1.18, 2.4, 4.7, 19 m tile pixels
def test_lower_zooms_read_aligned_reduced_pixels(zoom: int, reduction: int) -> None:
    grid, plan = _plan()
    read = tile_read(mercantile.tile(26.95, 60.53, zoom), grid, plan)
    assert read is not None and read.reduction == reduction
    box = read.box
    assert box.col_off % reduction == 0 and box.row_off % reduction == 0
    assert box.width % reduction == 0 and box.height % reduction == 0
    assert read.shape == (box.height // reduction, box.width // reduction)


def test_reduction_divides_the_chunk_side() -> None:
    grid = lattice_grid(AREA, 1.0, 896)  # 7 × 128: no reduction beyond 128
    read = tile_read(mercantile.tile(26.95, 60.53, 8), grid, ChunkPlan(grid.height, grid.width, 896, 256, 32))
    assert read is not None and read.reduction == 128


def test_a_tile_beyond_the_grid_reads_nothing() -> None:
    grid, plan = _plan()
    assert tile_read(mercantile.tile(27.5, 60.53, 17), grid, plan) is None
