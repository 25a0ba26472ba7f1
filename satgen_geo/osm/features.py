"""Turn a raw OSM/vector feature frame into the roads and buildings that get drawn."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from satgen_geo.osm.roads import RoadConfig, road_widths_m

log = logging.getLogger(__name__)

_LINES = (1, 5)  # shapely type ids: LineString, MultiLineString
_POLYGONS = (3, 6)  # Polygon, MultiPolygon


@dataclass(frozen=True)
class Features:
    """Road centrelines with their widths in metres, and building footprints, in one CRS."""

    roads: gpd.GeoSeries
    road_widths_m: np.ndarray
    buildings: gpd.GeoSeries

    @property
    def crs(self) -> CRS:
        """The CRS of both geometry series."""
        return self.roads.crs

    def to_crs(self, crs: CRS) -> Features:
        """Both geometry series reprojected to ``crs``."""
        return Features(self.roads.to_crs(crs), self.road_widths_m, self.buildings.to_crs(crs))

    def is_empty(self) -> bool:
        """True when there is nothing to draw."""
        return len(self.roads) == 0 and len(self.buildings) == 0


def select_features(raw: gpd.GeoDataFrame, road_config: RoadConfig | None = None) -> Features:
    """Pick the drawable roads and buildings from a raw feature frame.

    Roads are line features whose ``highway`` class is in ``road_config.classes``.
    Buildings are polygon features with ``building`` set and not ``"no"``; invalid
    polygons are repaired with ``make_valid`` (holes kept), and those that collapse to
    nothing are dropped with a count in the log.
    """
    config = road_config or RoadConfig()
    kind = shapely.get_type_id(raw.geometry.values)
    highway = raw["highway"].astype("string")
    is_road = np.isin(kind, _LINES) & highway.isin(list(config.classes)).fillna(False).to_numpy(bool)
    roads = raw[is_road]
    widths = road_widths_m(roads["highway"], roads["width"], roads["lanes"], config)

    building = raw["building"].astype("string")
    is_building = np.isin(kind, _POLYGONS) & (building.notna() & (building != "no")).to_numpy(bool)
    buildings = _repaired_polygons(raw.geometry[is_building])
    skipped = int((np.isin(kind, _LINES) & highway.notna().to_numpy(bool)).sum() - len(roads))
    log.info("%d roads (%d other highway ways skipped by class), %d buildings", len(roads), skipped, len(buildings))
    return Features(gpd.GeoSeries(roads.geometry.values, crs=raw.crs), widths, buildings)


def _repaired_polygons(polygons: gpd.GeoSeries) -> gpd.GeoSeries:
    geoms = np.array(polygons.values, dtype=object)  # a copy: the caller's frame stays as it was
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        fixed = shapely.make_valid(geoms[invalid])
        # keep only the polygonal part of what make_valid returns (it may add lines/points)
        geoms[invalid] = [_polygonal_part(g) for g in fixed]
    keep = ~shapely.is_empty(geoms) & (shapely.area(geoms) > 0)
    if invalid.any() or not keep.all():
        log.warning(
            "buildings: repaired %d invalid footprints, dropped %d degenerate ones",
            int(invalid.sum()), int((~keep).sum()),
        )
    return gpd.GeoSeries(geoms[keep], crs=polygons.crs)


def _polygonal_part(geom: shapely.Geometry) -> shapely.Geometry:
    if shapely.get_type_id(geom) in _POLYGONS:
        return geom
    parts = shapely.get_parts(geom)
    polygons = parts[np.isin(shapely.get_type_id(parts), _POLYGONS)]
    return shapely.union_all(polygons) if len(polygons) else shapely.Polygon()
