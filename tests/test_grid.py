"""Grid and bbox math: property tests over the snapping and transforms, and validation."""

from __future__ import annotations

import math

import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS, Geod

from satgen_geo.errors import AOIError, CRSError
from satgen_geo.grid import (
    WGS84, aoi_from_bbox, area_km2, check_area_of_use, metric_crs, resolve_crs, snap_grid, validate_bbox, wgs84_bounds,
)

UTM35 = CRS.from_epsg(32635)
coords = st.floats(-1e6, 1e6, allow_nan=False)
sizes = st.floats(0.5, 5e4, allow_nan=False)
gsds = st.sampled_from([0.3, 0.5, 1.0, 2.0, 2.5, 10.0])


@settings(max_examples=300, deadline=None)
@given(x=coords, y=coords, w=sizes, h=sizes, gsd=gsds)
def test_snapped_grid_covers_bounds_aligned_and_minimal(x: float, y: float, w: float, h: float, gsd: float) -> None:
    grid = snap_grid((x, y, x + w, y + h), UTM35, gsd)
    left, bottom, right, top = grid.bounds
    tol = 1e-6 * max(1.0, abs(x), abs(y))
    assert grid.transform.a == gsd and grid.transform.e == -gsd
    assert grid.transform.b == 0 and grid.transform.d == 0
    # covers the requested area
    assert left <= x + tol and bottom <= y + tol and right >= x + w - tol and top >= y + h - tol
    # minimal: less than one pixel of slack on each side
    assert x - left < gsd + tol and top - (y + h) < gsd + tol
    assert right - (x + w) < gsd + tol and (y) - bottom < gsd + tol
    # origin is a whole multiple of the GSD, so overlapping grids share pixel edges
    assert math.isclose(left / gsd, round(left / gsd), abs_tol=1e-6)
    assert math.isclose(top / gsd, round(top / gsd), abs_tol=1e-6)
    assert math.isclose(right - left, grid.width * gsd, rel_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(x=coords, y=coords, w=sizes, h=sizes, gsd=gsds, fx=st.floats(0, 1), fy=st.floats(0, 1))
def test_points_inside_bounds_map_to_pixels_inside_grid(x, y, w, h, gsd, fx, fy) -> None:  # noqa: ANN001
    grid = snap_grid((x, y, x + w, y + h), UTM35, gsd)
    col, row = ~grid.transform @ (x + fx * w, y + fy * h)
    assert -1e-6 <= col <= grid.width + 1e-6
    assert -1e-6 <= row <= grid.height + 1e-6


@settings(max_examples=100, deadline=None)
@given(
    west=st.floats(-179, 178), south=st.floats(-79, 78),
    dw=st.floats(1e-4, 0.5), ds=st.floats(1e-4, 0.5),
)
def test_bbox_reprojected_to_its_utm_zone_is_inside_the_grid(west, south, dw, ds) -> None:  # noqa: ANN001
    aoi = aoi_from_bbox((west, south, west + dw, south + ds))
    crs = resolve_crs(aoi)
    metric = aoi.to_crs(crs)
    grid = snap_grid(metric.bounds, crs, 1.0)
    left, bottom, right, top = grid.bounds
    mx0, my0, mx1, my1 = metric.bounds
    assert left <= mx0 and bottom <= my0 and right >= mx1 and top >= my1
    assert crs.utm_zone is not None


@pytest.mark.parametrize(
    ("bbox", "fragment"),
    [
        ((26.97, 60.52, 26.93, 60.54), "swapped"),
        ((26.93, 60.54, 26.97, 60.52), "swapped"),
        ((26.93, 60.52, 26.93, 60.54), "zero area"),
        ((200, 60.52, 201, 60.54), "-180..180"),
        ((26.93, 95, 26.97, 96), "-90..90"),
        ((26.93, 60.52, 26.97), "four"),
        (("a", 1, 2, 3), "four numbers"),
        ((float("nan"), 1, 2, 3), "finite"),
    ],
)
def test_bad_bbox_messages(bbox: tuple, fragment: str) -> None:
    with pytest.raises(AOIError, match=fragment):
        validate_bbox(bbox)


def test_metric_crs_rejects_degrees_and_feet() -> None:
    with pytest.raises(CRSError, match="geographic"):
        metric_crs("EPSG:4326")
    with pytest.raises(CRSError, match="not metres"):
        metric_crs("EPSG:2263")  # NY Long Island, US survey feet
    with pytest.raises(CRSError, match="cannot parse"):
        metric_crs("EPSG:999999")
    assert metric_crs("EPSG:3067").to_epsg() == 3067


def test_utm_zone_for_kotka_and_southern_hemisphere() -> None:
    assert resolve_crs(aoi_from_bbox((26.93, 60.52, 26.97, 60.54))).to_epsg() == 32635
    assert resolve_crs(aoi_from_bbox((151.2, -33.9, 151.3, -33.8))).to_epsg() == 32756  # Sydney


def test_aoi_reprojection_round_trip_is_faithful() -> None:
    aoi = aoi_from_bbox((26.93, 60.52, 26.97, 60.54))
    metric = aoi.to_crs(UTM35)
    back = metric.to_crs(CRS.from_epsg(4326))
    assert back.geometry.symmetric_difference(aoi.geometry).area < 1e-10
    assert back.crs == WGS84 and metric.crs == UTM35
    west, south, east, north = metric.bounds  # 0.04° of longitude at 60.5° N is about 2.2 km
    assert 2150 < east - west < 2250 and 2200 < north - south < 2250


def test_bad_gsd() -> None:
    with pytest.raises(AOIError, match="GSD"):
        snap_grid((0, 0, 10, 10), UTM35, 0)
    with pytest.raises(AOIError, match="too small") as info:  # the pixel count would overflow a float
        snap_grid((500_000, 6_710_000, 502_000, 6_712_000), UTM35, 1e-320)
    assert info.value.param == "gsd_m"


KOTKA = aoi_from_bbox((26.93, 60.52, 26.97, 60.54))


def test_crs_made_for_elsewhere_is_refused() -> None:
    with pytest.raises(CRSError, match="UTM zone 10N") as info:  # Canada's zone for Finland: rotated 153°
        check_area_of_use(KOTKA, CRS.from_epsg(32610))
    assert info.value.param == "crs" and "lon -126..-120" in str(info.value) and "'auto'" in str(info.value)
    assert check_area_of_use(KOTKA, CRS.from_epsg(3067)) is None  # Finland's own CRS
    assert check_area_of_use(KOTKA, CRS.from_epsg(3857)) is None  # worldwide
    # within the tolerance outside a zone edge: neither refused nor worth a warning
    assert check_area_of_use(aoi_from_bbox((30.2, 60.5, 30.6, 60.6)), UTM35) is None


def test_area_reaching_far_beyond_its_crs_is_a_warning() -> None:
    finland = aoi_from_bbox((20.0, 59.5, 31.6, 70.1))
    crs = resolve_crs(finland)  # auto: the zone of the centre, 35N (24..30° E)
    warning = check_area_of_use(finland, crs)
    assert crs.to_epsg() == 32635 and warning is not None and "4.0° beyond" in warning


def test_area_of_use_across_the_antimeridian() -> None:
    pacific = CRS.from_epsg(3832)  # PDC Mercator, lon 98.69 .. -68 (through 180)
    assert check_area_of_use(aoi_from_bbox((170.0, 0.0, 171.0, 1.0)), pacific) is None
    assert check_area_of_use(aoi_from_bbox((-150.0, 0.0, -149.0, 1.0)), pacific) is None
    with pytest.raises(CRSError):
        check_area_of_use(aoi_from_bbox((10.0, 0.0, 11.0, 1.0)), pacific)


def test_wgs84_bounds_of_a_degenerate_box() -> None:
    """A single horizontal road's extent has zero height: its box is still reprojected."""
    x, y = 500_000.0, 6_710_000.0
    west, south, east, north = wgs84_bounds((x - 400, y, x + 400, y), UTM35)
    assert 0 < north - south < 1e-5 and 0.01 < east - west < 0.02  # a UTM line bends a little in degrees
    assert wgs84_bounds((1.0, 2.0, 3.0, 4.0), WGS84) == (1.0, 2.0, 3.0, 4.0)


def test_area_of_small_and_world_wide_boxes() -> None:
    one_degree = aoi_from_bbox((26.0, 60.0, 27.0, 61.0))
    geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(shapely.segmentize(one_degree.geometry, 0.01))[0]) / 1e6
    assert area_km2(one_degree) == pytest.approx(geodesic, rel=1e-4)  # about 6,123 km²
    assert area_km2(aoi_from_bbox((-180, -90, 180, 90))) == pytest.approx(510.066e6, rel=1e-4)  # the whole Earth
    assert area_km2(aoi_from_bbox((-180, -85, 180, 85))) > 500e6  # a box 360° wide (its edges used to measure 0)
