"""Tile math: the XYZ scheme, native zoom from pixel size, tiles covering an area."""

from __future__ import annotations

import mercantile
import pytest

from satgen_geo.tiles.xyz import (
    TileError,
    check_tile,
    count_tiles,
    ground_px_m,
    native_zoom,
    tile_bounds,
    tile_centre_lat,
    tile_transform,
    tiles_covering,
)


@pytest.mark.parametrize(("z", "x", "y"), [(-1, 0, 0), (25, 0, 0), (3, 8, 0), (3, 0, -1), (0, 1, 0)])
def test_tiles_outside_the_scheme_are_refused(z: int, x: int, y: int) -> None:
    with pytest.raises(TileError) as err:
        check_tile(z, x, y)
    assert err.value.param == "tile"


def test_transform_maps_the_tile_corners_to_its_bounds() -> None:
    tile = check_tile(17, 75348, 37674)
    left, bottom, right, top = tile_bounds(tile)
    transform = tile_transform(tile)
    assert transform * (0, 0) == pytest.approx((left, top))
    assert transform * (256, 256) == pytest.approx((right, bottom))


@pytest.mark.parametrize(("lat", "zoom"), [(0.0, 18), (20.0, 18), (45.0, 17), (60.5, 17), (70.0, 16)])
def test_native_zoom_is_the_first_zoom_as_fine_as_the_model(lat: float, zoom: int) -> None:
    assert native_zoom(1.0, lat) == zoom
    assert ground_px_m(zoom, lat) <= 1.0 < ground_px_m(zoom - 1, lat)


def test_centre_latitude_lies_inside_the_tile() -> None:
    tile = mercantile.tile(26.95, 60.53, 12)
    bounds = mercantile.bounds(tile)
    assert bounds.south < tile_centre_lat(tile) < bounds.north


def test_count_matches_the_tiles_listed() -> None:
    bounds = (26.93, 60.52, 26.97, 60.54)
    for zoom in (10, 14, 17):
        tiles = list(tiles_covering(bounds, zoom))
        assert count_tiles(bounds, zoom) == len(tiles) == len(set(tiles))
        assert all(t.z == zoom for t in tiles)
