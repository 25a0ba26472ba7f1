"""The pure chunk plan: chunks tile the grid on the window lattice, halos are exactly what windows read."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS

from satgen_geo.errors import ConfigError
from satgen_geo.grid import Grid
from satgen_geo.rasterize import rasterize_aoi
from satgen_geo.region.chunks import (
    ChunkPlan,
    PixelBox,
    box_bounds,
    box_grid,
    plan_chunks,
    touches_area,
)
from satgen_geo.tiling import plan_windows

UTM = CRS.from_epsg(32635)


def _grid(height: int, width: int, gsd: float = 1.0) -> Grid:
    return Grid(UTM, Affine(gsd, 0.0, 500_000.0, 0.0, -gsd, 6_700_000.0), width, height)


def _window_span(offsets: tuple[int, ...], tile: int, start: int, stop: int, length: int) -> tuple[int, int]:
    """Pixels under the windows that touch ``[start, stop)``, computed from the engine's own plan."""
    touching = [o for o in offsets if o < stop and o + tile > start]
    return min(touching), min(max(touching) + tile, length)


plans = st.tuples(
    st.integers(1, 3000), st.integers(1, 3000), st.sampled_from([256, 512]), st.sampled_from([0, 64, 100, 128, 192, 224]),
    st.integers(256, 2048),
)


@settings(max_examples=150, deadline=None)
@given(plans)
def test_chunks_tile_the_grid_on_the_lattice_and_halos_cover_their_windows(args: tuple[int, ...]) -> None:
    height, width, tile, overlap, chunk_px = args
    plan = plan_chunks(_grid(height, width), chunk_px, tile, overlap)
    stride = tile - overlap
    assert plan.chunk_px % stride == 0 and plan.chunk_px <= max(chunk_px, 256 + stride)
    windows = plan_windows(height, width, tile, overlap)
    covered = np.zeros((height, width), dtype=np.int32)
    for chunk in plan:
        box, halo = chunk.box, chunk.halo
        assert box.col_off % stride == 0 and box.row_off % stride == 0  # borders on the window lattice
        covered[box.row_off : box.row_off + box.height, box.col_off : box.col_off + box.width] += 1
        rows = _window_span(windows.row_offsets, tile, box.row_off, box.row_off + box.height, height)
        cols = _window_span(windows.col_offsets, tile, box.col_off, box.col_off + box.width, width)
        assert (halo.row_off, halo.row_off + halo.height) == rows
        assert (halo.col_off, halo.col_off + halo.width) == cols
        assert halo.contains(box)
    assert (covered == 1).all()  # every pixel in exactly one chunk
    assert len(plan) == plan.rows * plan.cols == len(list(plan))


def test_edge_chunks_are_cut_at_the_grid_and_halos_stop_there() -> None:
    plan = plan_chunks(_grid(1004, 1044), 512)
    assert (plan.rows, plan.cols) == (2, 3)
    last = plan.chunk(1, 2)
    assert last.box == PixelBox(1024, 512, 20, 492)
    assert last.halo == PixelBox(896, 384, 148, 620)  # the first window touching col 1024 starts at 7 * 128
    first = plan.chunk(0, 0)
    assert first.box == PixelBox(0, 0, 512, 512) and first.halo == PixelBox(0, 0, 640, 640)
    assert [c.id for c in plan][:2] == ["r0000_c0000", "r0000_c0001"]


def test_chunk_size_is_rounded_to_the_stride_and_checked() -> None:
    assert plan_chunks(_grid(100, 100), 4096, 256, 100).chunk_px == 4056  # stride 156
    assert plan_chunks(_grid(100, 100), 300, 256, 128).chunk_px == 256
    with pytest.raises(ConfigError, match="multiple of the window stride 128") as err:
        ChunkPlan(100, 100, 300, 256, 128)
    assert err.value.param == "chunk_px"
    with pytest.raises(ConfigError, match="chunk size") as err:
        plan_chunks(_grid(100, 100), 100)
    assert err.value.param == "chunk_px"
    with pytest.raises(ConfigError, match="outside the 1×1 chunk grid"):
        plan_chunks(_grid(100, 100), 256).chunk(1, 0)


def test_box_grid_and_bounds_follow_the_transform() -> None:
    grid = _grid(1000, 1000, gsd=2.0)
    box = PixelBox(256, 128, 100, 50)
    sub = box_grid(grid, box)
    assert sub.transform == Affine(2.0, 0.0, 500_512.0, 0.0, -2.0, 6_699_744.0)
    assert (sub.width, sub.height) == (100, 50)
    assert box_bounds(grid, box) == (500_512.0, 6_699_644.0, 500_712.0, 6_699_744.0)


@settings(max_examples=80, deadline=None)
@given(st.floats(-5, 70), st.floats(-5, 70), st.floats(0.2, 40), st.floats(0.2, 40),
       st.sampled_from([PixelBox(0, 0, 64, 64), PixelBox(3, 5, 1, 40), PixelBox(9, 2, 30, 1), PixelBox(7, 7, 1, 1)]))
def test_an_area_said_not_to_touch_a_box_has_no_pixel_centre_in_it(
    x: float, y: float, w: float, h: float, box: PixelBox
) -> None:
    grid = _grid(80, 80)
    area = shapely.box(500_000.0 + x, 6_700_000.0 - 80 + y, 500_000.0 + x + w, 6_700_000.0 - 80 + y + h)
    inside = rasterize_aoi(area, grid, box.window).any()
    if not touches_area(grid, box, area):
        assert not inside
    if inside:
        assert touches_area(grid, box, area)
