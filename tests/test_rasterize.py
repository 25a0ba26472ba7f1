"""rasterize.py on its own: blocks, per-window burning (equal to one pass), road widths, the AOI mask."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS
from rasterio.windows import Window

from satgen_geo.grid import Grid
from satgen_geo.osm.features import Features
from satgen_geo.rasterize import (
    BUILDINGS, ON, ROADS, count_blocks, iter_blocks, prepare_shapes, rasterize_aoi, rasterize_window,
)

UTM = CRS.from_epsg(32635)


def _grid(width: int, height: int) -> Grid:
    return Grid(UTM, Affine(1.0, 0.0, 500_000.0, 0.0, -1.0, 6_710_000.0 + height), width, height)


def _features(roads: list, widths: list[float], buildings: list) -> Features:
    return Features(gpd.GeoSeries(roads, crs=UTM), np.asarray(widths, dtype=float), gpd.GeoSeries(buildings, crs=UTM))


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 3000), height=st.integers(1, 3000), block=st.sampled_from([256, 300, 1024, 4096]))
def test_blocks_cover_every_pixel_once(width: int, height: int, block: int) -> None:
    grid = _grid(width, height)
    blocks = list(iter_blocks(grid, block))
    assert len(blocks) == count_blocks(grid, block)
    assert sum(int(w.width) * int(w.height) for w in blocks) == width * height
    assert all(0 < w.width <= block and 0 < w.height <= block for w in blocks)
    assert all(w.col_off + w.width <= width and w.row_off + w.height <= height for w in blocks)
    assert len({(w.col_off, w.row_off) for w in blocks}) == len(blocks)


def test_blocks_are_made_lazily() -> None:
    huge = _grid(10**9, 10**9)  # 6e10 blocks of 4096: a list of them would not fit in memory
    assert count_blocks(huge, 4096) == 244141**2
    assert next(iter_blocks(huge, 4096)) == Window(0, 0, 4096, 4096)


def test_window_by_window_equals_one_pass() -> None:
    x0, y0 = 500_000.0, 6_710_000.0
    roads = [shapely.LineString([(x0 + 5, y0 + 20), (x0 + 290, y0 + 170)]),
             shapely.LineString([(x0 + 150, y0), (x0 + 150, y0 + 200)])]
    buildings = [shapely.box(x0 + 30, y0 + 120, x0 + 75, y0 + 160), shapely.box(x0 + 200, y0 + 30, x0 + 260, y0 + 90)]
    shapes = prepare_shapes(_features(roads, [9.0, 4.0], buildings))
    grid = _grid(300, 200)
    whole = rasterize_window(shapes, grid, Window(0, 0, 300, 200))
    assert whole[ROADS].any() and whole[BUILDINGS].any() and set(np.unique(whole)) == {0, ON}
    pieced = np.zeros_like(whole)
    for window in iter_blocks(grid, 64):
        rows, cols = window.toslices()
        pieced[:, rows, cols] = rasterize_window(shapes, grid, window)
    np.testing.assert_array_equal(pieced, whole)


def test_roads_are_buffered_to_their_width() -> None:
    x0, y0 = 500_000.0, 6_710_000.0
    road = shapely.LineString([(x0, y0 + 50), (x0 + 100, y0 + 50)])  # horizontal, 50 m above the bottom
    for width in (4.0, 10.0):
        out = rasterize_window(prepare_shapes(_features([road], [width], [])), _grid(100, 100), Window(0, 0, 100, 100))
        assert np.flatnonzero(out[ROADS, :, 50]).size == width  # 1 m pixels: the width in pixels
        assert not out[BUILDINGS].any()


def test_aoi_mask_uses_pixel_centres() -> None:
    grid = _grid(10, 10)
    x0, y0 = 500_000.0, 6_710_000.0
    triangle = shapely.Polygon([(x0, y0), (x0 + 10, y0), (x0, y0 + 10.3)])  # about the lower-left half
    valid = rasterize_aoi(triangle, grid, Window(0, 0, 10, 10))
    rows, cols = np.indices(valid.shape)
    centre_x, centre_y = cols + 0.5, 10 - (rows + 0.5)  # metres from the triangle's corner
    np.testing.assert_array_equal(valid == ON, centre_x / 10 + centre_y / 10.3 < 1)  # no centre on the edge
    part = rasterize_aoi(triangle, grid, Window(5, 5, 5, 5))
    np.testing.assert_array_equal(part, valid[5:, 5:])
