"""The regional OSM store: roads and buildings in a spatially indexed GeoPackage, read by bbox.

``satgen osm extract`` (:func:`satgen_geo.osm.extract.extract_store`) writes it once from a
regional ``.osm.pbf``; every later mask reads only the features that intersect the window
it needs (:func:`read_store`, an R-tree query), so building the mask of one chunk of a large
region costs time proportional to the chunk, not to the region.

Layout (EPSG:4326, one GeoPackage, format :data:`STORE_FORMAT`):

``roads``
    LineString; ``osm_id`` (way id), ``highway``, ``width``, ``lanes`` (the raw tag text).
``buildings``
    MultiPolygon with holes; ``osm_id``, ``osm_type`` (``way`` or ``relation``), ``building``.

The dataset metadata records the format, the source file and the extent the store covers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS
from shapely.geometry import box

from satgen_geo.errors import InputFileError
from satgen_geo.grid import AOI, WGS84, validate_bbox
from satgen_geo.osm.files import RAW_COLUMNS, empty_raw

log = logging.getLogger(__name__)

STORE_FORMAT = "satgen-osm-store/1"
ROADS_LAYER, BUILDINGS_LAYER = "roads", "buildings"
ROAD_FIELDS = ("osm_id", "highway", "width", "lanes")
BUILDING_FIELDS = ("osm_id", "osm_type", "building")
#: Dataset metadata keys.
META_FORMAT, META_SOURCE, META_EXTENT = "SATGEN_STORE", "SATGEN_SOURCE", "SATGEN_EXTENT_WGS84"


def store_info(path: str | Path) -> dict[str, str]:
    """The store's dataset metadata; raises :class:`InputFileError` unless ``path`` is a store."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"OSM store {path} does not exist; build one with 'satgen osm extract'", param="store")
    try:
        meta = pyogrio.read_info(path, layer=ROADS_LAYER).get("dataset_metadata") or {}
    except (DataSourceError, DataLayerError):
        meta = {}
    if meta.get(META_FORMAT) != STORE_FORMAT:
        raise InputFileError(
            f"{path} is not a satgen OSM store ({STORE_FORMAT}); build one with 'satgen osm extract'", param="store"
        )
    return dict(meta)


def is_store(path: str | Path) -> bool:
    """True when ``path`` is a GeoPackage written by :func:`~satgen_geo.osm.extract.extract_store`."""
    try:
        store_info(path)
    except InputFileError:
        return False
    return True


def store_extent(path: str | Path) -> tuple[float, float, float, float]:
    """The ``(west, south, east, north)`` EPSG:4326 extent the store covers."""
    text = store_info(path)[META_EXTENT]
    return validate_bbox([float(v) for v in text.split(",")])


def read_store(path: str | Path, bbox: Sequence[float] | None = None, crs: object = WGS84) -> gpd.GeoDataFrame:
    """Roads and buildings of the store that intersect ``bbox``, as a raw feature frame.

    Parameters
    ----------
    path
        A store from :func:`~satgen_geo.osm.extract.extract_store`.
    bbox
        ``(minx, miny, maxx, maxy)`` in ``crs``; ``None`` reads everything. Only the
        features whose geometry intersects it are read (GeoPackage R-tree, then an exact test).
    crs
        CRS of ``bbox`` (default EPSG:4326); the box is reprojected with densified edges.

    Returns
    -------
    geopandas.GeoDataFrame
        The raw frame :func:`satgen_geo.osm.features.select_features` takes: columns
        ``highway``, ``building``, ``width``, ``lanes`` and the geometry, in EPSG:4326.
    """
    path = Path(path)
    store_info(path)
    query = None if bbox is None else AOI(box(*bbox), CRS.from_user_input(crs)).to_crs(WGS84).bounds
    try:
        roads = pyogrio.read_dataframe(path, layer=ROADS_LAYER, columns=["highway", "width", "lanes"], bbox=query)
        buildings = pyogrio.read_dataframe(path, layer=BUILDINGS_LAYER, columns=["building"], bbox=query)
    except (DataSourceError, DataLayerError) as err:
        raise InputFileError(f"cannot read OSM store {path} ({str(err).splitlines()[0]})", param="store") from None
    frames = [f for f in (roads, buildings) if len(f)]
    if not frames:
        return empty_raw()
    raw = pd.concat(frames, ignore_index=True).reindex(columns=[*RAW_COLUMNS, "geometry"])
    for column in RAW_COLUMNS:
        raw[column] = raw[column].astype(object)
    log.debug("%s: %d roads and %d buildings in %s", path.name, len(roads), len(buildings), query)
    return gpd.GeoDataFrame(raw, geometry="geometry", crs=WGS84)
