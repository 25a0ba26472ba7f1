"""Pure Web Mercator tile math: the XYZ scheme, tile bounds and transforms, zoom from pixel size.

Tiles are the standard XYZ ("slippy map") scheme in EPSG:3857 with the origin at the top
left, as OpenStreetMap, Leaflet, MapLibre and QGIS's XYZ layers use them; the arithmetic is
:mod:`mercantile`'s. Pure: integers, floats and affine transforms, no IO.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import mercantile
from affine import Affine

from satgen_geo.errors import ConfigError

#: Output tile side in pixels.
TILE_PX = 256
#: Zooms served: 0 (the world in one tile) to 24 (about 1 cm per pixel at the equator).
MIN_ZOOM, MAX_ZOOM = 0, 24
#: Web Mercator's pixel size at zoom 0 on the equator (m/px) for 256 px tiles.
_EQUATOR_M_PER_PX = 2 * math.pi * 6378137.0 / TILE_PX
#: The latitudes Web Mercator covers.
MAX_LAT = 85.0511287798066


class TileError(ConfigError):
    """A tile address that does not exist (zoom out of range, x or y outside the zoom's grid)."""


def check_tile(z: int, x: int, y: int) -> mercantile.Tile:
    """The tile ``z/x/y``, checked to exist in the XYZ scheme.

    Raises
    ------
    TileError
        For a zoom outside 0..24 or an x or y outside ``0 .. 2**z - 1``.
    """
    if not (isinstance(z, int) and MIN_ZOOM <= z <= MAX_ZOOM):
        raise TileError(f"zoom {z} is outside {MIN_ZOOM}..{MAX_ZOOM}", param="tile")
    side = 1 << z
    if not (isinstance(x, int) and isinstance(y, int) and 0 <= x < side and 0 <= y < side):
        raise TileError(f"tile {z}/{x}/{y} does not exist: x and y run from 0 to {side - 1} at zoom {z}", param="tile")
    return mercantile.Tile(x, y, z)


def tile_bounds(tile: mercantile.Tile) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of the tile in EPSG:3857 metres."""
    b = mercantile.xy_bounds(tile)
    return b.left, b.bottom, b.right, b.top


def tile_transform(tile: mercantile.Tile, size_px: int = TILE_PX) -> Affine:
    """The affine transform of a ``size_px`` × ``size_px`` image of the tile (EPSG:3857)."""
    left, bottom, right, top = tile_bounds(tile)
    return Affine((right - left) / size_px, 0.0, left, 0.0, (bottom - top) / size_px, top)


def tile_centre_lat(tile: mercantile.Tile) -> float:
    """The latitude (degrees) of the tile's centre."""
    _, bottom, _, top = tile_bounds(tile)
    return float(mercantile.lnglat(0.0, (bottom + top) / 2.0).lat)


def ground_px_m(zoom: int, lat: float) -> float:
    """The ground size of one tile pixel (m) at ``zoom`` and latitude ``lat`` (Web Mercator's scale)."""
    return _EQUATOR_M_PER_PX * math.cos(math.radians(lat)) / (1 << zoom)


def native_zoom(gsd_m: float, lat: float) -> int:
    """The smallest zoom whose ground pixel at ``lat`` is at most ``gsd_m``: the render's own detail.

    For the 1 m default model: z17 between about 33° and 65° of latitude (0.50–1.00 m/px),
    z18 nearer the equator, z16 nearer the poles.
    """
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    for zoom in range(MIN_ZOOM, MAX_ZOOM + 1):
        if ground_px_m(zoom, lat) <= gsd_m:
            return zoom
    return MAX_ZOOM


def tiles_covering(bounds_wgs84: Sequence[float], zoom: int) -> Iterator[mercantile.Tile]:
    """The tiles of ``zoom`` that intersect ``(west, south, east, north)`` (EPSG:4326), row by row."""
    west, south, east, north = bounds_wgs84
    south, north = max(south, -MAX_LAT), min(north, MAX_LAT)
    yield from mercantile.tiles(west, south, east, north, zooms=zoom)


def count_tiles(bounds_wgs84: Sequence[float], zoom: int) -> int:
    """How many tiles :func:`tiles_covering` yields, without listing them."""
    west, south, east, north = bounds_wgs84
    first = mercantile.tile(west, min(north, MAX_LAT), zoom)
    last = mercantile.tile(min(east, 180.0 - 1e-9), max(south, -MAX_LAT), zoom)
    return (last.x - first.x + 1) * (last.y - first.y + 1)
