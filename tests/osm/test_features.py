"""Feature selection, repair and road widths; rasterizing holes and widths."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window

from satgen_geo.grid import Grid
from satgen_geo.osm.features import select_features
from satgen_geo.osm.roads import RoadConfig, parse_metres, road_widths_m
from satgen_geo.rasterize import prepare_shapes, rasterize_window

UTM = CRS.from_epsg(32635)


def _raw(rows: list[dict]) -> gpd.GeoDataFrame:
    frame = pd.DataFrame(rows).reindex(columns=["highway", "building", "width", "lanes", "geometry"])
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=UTM)


def test_width_parsing_and_precedence() -> None:
    assert np.allclose(parse_metres(pd.Series(["7", "7.5 m", "6,5", "12m"])), [7, 7.5, 6.5, 12])
    assert np.isnan(parse_metres(pd.Series(["10'", "wide", None]))).all()
    widths = road_widths_m(
        pd.Series(["residential", "residential", "motorway", "unknown"]),
        pd.Series(["9", None, None, None]),
        pd.Series([None, "4", None, None]),
        RoadConfig(),
    )
    assert widths.tolist() == [9.0, 14.0, 14.0, 6.0]


def test_selection_repair_and_holes() -> None:
    courtyard = shapely.Polygon([(0, 0), (40, 0), (40, 40), (0, 40)], [[(10, 10), (30, 10), (30, 30), (10, 30)]])
    bowtie = shapely.Polygon([(50, 0), (70, 20), (70, 0), (50, 20)])  # self-intersecting
    sliver = shapely.Polygon([(80, 0), (90, 0), (85, 0)])  # zero area
    raw = _raw([
        {"building": "yes", "geometry": courtyard},
        {"building": "house", "geometry": bowtie},
        {"building": "yes", "geometry": sliver},
        {"building": "no", "geometry": shapely.box(0, 60, 10, 70)},
        {"highway": "residential", "geometry": shapely.LineString([(0, 50), (100, 50)])},
        {"highway": "footway", "geometry": shapely.LineString([(0, 80), (100, 80)])},
        {"highway": "residential", "geometry": shapely.box(0, 90, 5, 95)},  # an area, not a road line
    ])
    features = select_features(raw)
    assert len(features.roads) == 1 and features.road_widths_m.tolist() == [6.0]
    assert len(features.buildings) == 2
    assert shapely.is_valid(features.buildings.values).all()
    assert abs(features.buildings.area.sum() - (1600 - 400 + 200)) < 1e-6
    assert not raw.geometry.iloc[1].is_valid  # the caller's frame is not modified

    grid = Grid(UTM, Affine(1, 0, 0, 0, -1, 100), 100, 100)
    mask = rasterize_window(prepare_shapes(features), grid, Window(0, 0, 100, 100))
    row = lambda y: int(100 - y)  # noqa: E731
    assert mask[1, row(5), 5] == 255 and mask[1, row(20), 20] == 0  # courtyard hole stays empty
    road_rows = np.flatnonzero(mask[0, :, 50])
    assert len(road_rows) == 6 and road_rows.min() == row(53)  # 6 m wide, centred on y=50
    assert not mask[0, row(80)].any()  # footway not drawn
