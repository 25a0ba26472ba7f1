"""A synthetic basemap: XYZ tiles rendered on demand from OSM data, cached, exported.

:class:`TileSource` (:mod:`~satgen_geo.tiles.source`) turns a source into tiles on a render
grid fixed by a global lattice (:mod:`~satgen_geo.tiles.lattice`), rendering chunks of the
region job's chunk plan into a size-bounded cache (:mod:`~satgen_geo.tiles.cache`); tile
math is :mod:`~satgen_geo.tiles.xyz`, image encoding :mod:`~satgen_geo.tiles.encode`.
"""

from satgen_geo.tiles.encode import MEDIA_TYPES, decode_tile, encode_tile
from satgen_geo.tiles.source import TileConfig, TileSource, TileZoomError
from satgen_geo.tiles.xyz import TileError

__all__ = ["MEDIA_TYPES", "TileConfig", "TileError", "TileSource", "TileZoomError", "decode_tile", "encode_tile"]
