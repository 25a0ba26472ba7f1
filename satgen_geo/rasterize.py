"""Pure rasterization: roads and buildings in a metric CRS → a uint8 ``(2, H, W)`` mask.

Band 1 (index 0) is roads, band 2 (index 1) buildings, 0 or 255. Roads are buffered by
half their width in metres; buildings are filled (holes stay empty). Work is done per
window through a spatial index, so memory is bounded by the window, not the area.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio import features as rio_features
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from satgen_geo.grid import Grid
from satgen_geo.osm.features import Features

ROADS, BUILDINGS = 0, 1
BAND_NAMES = ("roads", "buildings")
ON = 255
#: Segments per quarter circle for round road ends and joins (4 is plenty at 1 m/px).
_QUAD_SEGS = 4


@dataclass(frozen=True)
class DrawableShapes:
    """Polygons ready to burn (roads already buffered), with spatial indexes."""

    roads: np.ndarray
    buildings: np.ndarray
    road_index: shapely.STRtree
    building_index: shapely.STRtree


def prepare_shapes(features: Features) -> DrawableShapes:
    """Buffer road centrelines to their widths and index everything; ``features`` in the grid CRS."""
    roads = shapely.buffer(
        np.asarray(features.roads.values, dtype=object), features.road_widths_m / 2.0, quad_segs=_QUAD_SEGS
    )
    buildings = np.asarray(features.buildings.values, dtype=object)
    return DrawableShapes(roads, buildings, shapely.STRtree(roads), shapely.STRtree(buildings))


def rasterize_window(shapes: DrawableShapes, grid: Grid, window: Window) -> np.ndarray:
    """Burn the shapes that touch ``window`` of ``grid`` into a ``(2, h, w)`` uint8 array."""
    height, width = int(window.height), int(window.width)
    out = np.zeros((2, height, width), dtype=np.uint8)
    transform = window_transform(window, grid.transform)
    area = shapely.box(*window_bounds(window, grid.transform))
    for band, geoms, index in ((ROADS, shapes.roads, shapes.road_index), (BUILDINGS, shapes.buildings, shapes.building_index)):
        hits = geoms[index.query(area, predicate="intersects")]
        if len(hits):
            rio_features.rasterize(hits, out=out[band], transform=transform, default_value=ON, dtype=np.uint8)
    return out


def rasterize_aoi(aoi_geometry: shapely.Geometry, grid: Grid, window: Window) -> np.ndarray:
    """A uint8 validity mask of ``window``: 255 where a pixel centre lies inside the AOI."""
    out = np.zeros((int(window.height), int(window.width)), dtype=np.uint8)
    rio_features.rasterize([aoi_geometry], out=out, transform=window_transform(window, grid.transform), default_value=ON)
    return out


def iter_blocks(grid: Grid, block_px: int) -> Iterator[Window]:
    """Row-major windows of at most ``block_px`` × ``block_px`` covering the grid (made one at a time)."""
    for row in range(0, grid.height, block_px):
        for col in range(0, grid.width, block_px):
            yield Window(col, row, min(block_px, grid.width - col), min(block_px, grid.height - row))


def count_blocks(grid: Grid, block_px: int) -> int:
    """How many windows :func:`iter_blocks` yields."""
    return -(-grid.width // block_px) * -(-grid.height // block_px)
