"""End to end: real OSM data → mask GeoTIFF, read back with rasterio and checked."""

from __future__ import annotations

import bz2
import tracemalloc
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import CRS, Transformer

from satgen_geo.errors import ConfigError, LimitError
from satgen_geo.geotiff import OSM_ATTRIBUTION, USER_DATA_ATTRIBUTION
from satgen_geo.grid import aoi_from_bbox
from satgen_geo.mask import MaskConfig, MaskSource, build_mask, plan_mask
from satgen_geo.osm.files import read_aoi
from satgen_geo.osm.roads import RoadConfig
from tests.conftest import FIXTURES, SAMPLE_AOI, SAMPLE_PBF, run_cli

# Known places in the real Kotka extract (lon, lat), found once in the OSM data:
MOTORWAY = (26.957196213579227, 60.52922149108287)  # midpoint of motorway way 33042885 (E18)
BUILDING = (26.945325294275218, 60.53811905780133)  # inside building way 424089695
FOOTWAY = (26.962514332017815, 60.52640945967675)  # footway way 92867835, 84 m from any road
EXTRACT_BBOX = (26.93, 60.52, 26.97, 60.54)


def _pixel(ds: rasterio.DatasetReader, lonlat: tuple[float, float]) -> tuple[int, int]:
    x, y = Transformer.from_crs(4326, ds.crs, always_xy=True).transform(*lonlat)
    return ds.index(x, y)


@pytest.fixture(scope="module")
def sample_mask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mask") / "m.tif"
    result = run_cli("mask", "--osm", SAMPLE_PBF, "-o", out)
    assert result.returncode == 0, result.stderr
    return out


def test_sample_mask_grid_and_bands(sample_mask: Path) -> None:
    with rasterio.open(sample_mask) as ds:
        assert ds.crs.to_epsg() == 32635  # UTM 35N for Kotka
        assert ds.res == (1.0, 1.0)
        assert ds.count == 2 and ds.dtypes == ("uint8", "uint8")
        assert ds.descriptions == ("roads", "buildings")
        assert ds.profile["tiled"] and ds.compression is not None
        assert "OpenStreetMap contributors" in ds.tags()["ATTRIBUTION"]
        # bounds: the extract's bbox reprojected, snapped outwards by less than a pixel
        aoi = aoi_from_bbox(EXTRACT_BBOX).to_crs(ds.crs)
        ax0, ay0, ax1, ay1 = aoi.bounds
        b = ds.bounds
        assert 0 <= ax0 - b.left < 1 and 0 <= ay0 - b.bottom < 1
        assert 0 <= b.right - ax1 < 1 and 0 <= b.top - ay1 < 1
        assert b.left % 1 == 0 and b.top % 1 == 0
        data = ds.read()
        assert set(np.unique(data)) == {0, 255}
        roads, buildings = _pixel(ds, MOTORWAY), _pixel(ds, BUILDING)
        assert data[0][roads] == 255 and data[1][roads] == 0
        assert data[1][buildings] == 255
        # the motorway is drawn about 14 m wide: a 5 px neighbourhood is all road
        r, c = roads
        assert (data[0, r - 2 : r + 3, c - 2 : c + 3] == 255).all()
        footway = _pixel(ds, FOOTWAY)
        assert data[0][footway] == 0
        # pixels outside the extract's bbox (UTM-rotated corners) are masked out
        valid = ds.dataset_mask()
        assert valid[ds.height // 2, ds.width // 2] == 255
        assert 0.99 < (valid > 0).mean() < 1.0


def test_footways_drawn_when_included(tmp_path: Path) -> None:
    config = MaskConfig(roads=RoadConfig(classes=RoadConfig().classes | {"footway"}))
    result = build_mask(tmp_path / "m.tif", MaskSource(osm=SAMPLE_PBF), config)
    with rasterio.open(result.path) as ds:
        assert ds.read(1)[_pixel(ds, FOOTWAY)] == 255


def test_aoi_file_clips_area_and_user_crs(tmp_path: Path) -> None:
    out = tmp_path / "m.tif"
    result = build_mask(out, MaskSource(aoi=SAMPLE_AOI, osm=SAMPLE_PBF), MaskConfig(gsd_m=2.0, crs="EPSG:3067"))
    aoi = read_aoi(SAMPLE_AOI).to_crs(CRS.from_epsg(3067))
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 3067 and ds.res == (2.0, 2.0)
        b = ds.bounds
        assert abs(b.left - aoi.bounds[0]) < 2 and abs(b.top - aoi.bounds[3]) < 2
        assert ds.read(2).any() and ds.read(1).any()
        assert ds.bounds.left % 2 == 0
    assert result.n_buildings > 100


def test_osm_xml_and_bz2_match(tmp_path: Path) -> None:
    xml = FIXTURES / "kotka_clip.osm"
    packed = tmp_path / "kotka_clip.osm.bz2"
    packed.write_bytes(bz2.compress(xml.read_bytes()))
    bbox = (26.945, 60.525, 26.952, 60.529)
    a = build_mask(tmp_path / "a.tif", MaskSource(bbox=bbox, osm=xml))
    b = build_mask(tmp_path / "b.tif", MaskSource(bbox=bbox, osm=packed))
    with rasterio.open(a.path) as da, rasterio.open(b.path) as db:
        first = da.read()
        assert first[0].any() and first[1].any()
        np.testing.assert_array_equal(first, db.read())


def test_vector_layers_in_another_crs(tmp_path: Path) -> None:
    """Hand-drawn layers in Web Mercator: one road line and one building square."""
    to_3857 = Transformer.from_crs(4326, 3857, always_xy=True)
    x0, y0 = to_3857.transform(26.95, 60.53)
    road = gpd.GeoDataFrame(geometry=[shapely.LineString([(x0 - 400, y0), (x0 + 400, y0)])], crs=3857)
    house = gpd.GeoDataFrame({"name": ["house"]}, geometry=[shapely.box(x0 - 20, y0 + 100, x0 + 20, y0 + 140)], crs=3857)
    road.to_file(tmp_path / "roads.gpkg")
    house.to_file(tmp_path / "buildings.geojson")
    out = tmp_path / "m.tif"
    result = build_mask(out, MaskSource(roads=tmp_path / "roads.gpkg", buildings=tmp_path / "buildings.geojson"))
    assert (result.n_roads, result.n_buildings) == (1, 1)
    with rasterio.open(out) as ds:
        data = ds.read()
        to_ds = Transformer.from_crs(3857, ds.crs, always_xy=True)
        r, c = ds.index(*to_ds.transform(x0, y0))
        assert data[0, r, c] == 255 and data[1, r, c] == 0
        r, c = ds.index(*to_ds.transform(x0, y0 + 120))
        assert data[1, r, c] == 255 and data[0, r, c] == 0


def test_empty_area_writes_zero_mask_with_warning(tmp_path: Path) -> None:
    out = tmp_path / "m.tif"
    # a small corner of the extract with no mapped roads or buildings
    result = run_cli("mask", "--osm", SAMPLE_PBF, "--bbox", "26.9301,60.5391,26.9309,60.5399", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "all zero" in result.stderr
    with rasterio.open(out) as ds:
        assert not ds.read().any()


FINLAND = (20.0, 59.5, 31.6, 70.1)


def test_size_is_checked_before_any_feature_is_read(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.osm.pbf"  # reading it would fail: the size check must come first
    garbage.write_bytes(b"\x00 not a protobuf" * 100)
    with pytest.raises(LimitError, match="raise the pixel limit") as info:
        build_mask(tmp_path / "m.tif", MaskSource(bbox=FINLAND, osm=garbage))
    assert info.value.param == "max_pixels" and "656,145 × 1,196,565 px" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["garbage.osm.pbf"]


def test_tiny_pixel_size_stops_without_allocating(tmp_path: Path) -> None:
    """``--gsd 1e-6`` used to end in a MemoryError: now a LimitError before anything the raster's size."""
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match="2,197,016,488 × 2,229,200,857 px"):
            build_mask(tmp_path / "m.tif", MaskSource(osm=SAMPLE_PBF), MaskConfig(gsd_m=1e-6))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6


def test_extent_of_local_files_is_known_before_reading(tmp_path: Path) -> None:
    road = gpd.GeoDataFrame(geometry=[shapely.LineString([(500_000, 6_710_000), (500_800, 6_710_300)])], crs=32635)
    road.to_file(tmp_path / "roads.gpkg")
    plan = plan_mask(MaskSource(roads=tmp_path / "roads.gpkg"), MaskConfig())
    assert plan is not None and (plan.grid.width, plan.grid.height) in {(801, 301), (802, 302), (801, 302), (802, 301)}
    header = plan_mask(MaskSource(osm=SAMPLE_PBF), MaskConfig())
    assert header is not None and header.aoi.bounds == pytest.approx(EXTRACT_BBOX, abs=1e-6)
    assert plan_mask(MaskSource(osm=FIXTURES / "kotka_clip.osm"), MaskConfig()) is None  # no <bounds>: read to know


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"gsd_m": 0}, "gsd_m"), ({"gsd_m": float("nan")}, "gsd_m"), ({"gsd_m": True}, "gsd_m"), ({"crs": ""}, "crs"),
     ({"block_px": 3}, "block_px"), ({"max_pixels": 0}, "max_pixels"), ({"max_pixels": 2.5}, "max_pixels")],
)
def test_mask_config_validates_itself(kwargs: dict, param: str) -> None:
    with pytest.raises(ConfigError) as info:
        MaskConfig(**kwargs)
    assert info.value.param == param and "--" not in str(info.value)


def test_attribution_follows_the_data_used(tmp_path: Path) -> None:
    road = gpd.GeoDataFrame(geometry=[shapely.LineString([(500_000, 6_710_000), (500_300, 6_710_000)])], crs=32635)
    road.to_file(tmp_path / "roads.gpkg")
    result = build_mask(tmp_path / "own.tif", MaskSource(roads=tmp_path / "roads.gpkg"))
    with rasterio.open(result.path) as ds:
        assert ds.tags()["ATTRIBUTION"] == USER_DATA_ATTRIBUTION and "OpenStreetMap" not in ds.tags()["SOURCE"]
    assert MaskSource(roads=FIXTURES / "kotka_clip.osm").attribution() == OSM_ATTRIBUTION  # OSM data as a layer
    assert MaskSource(osm=tmp_path / "roads.gpkg").attribution() == OSM_ATTRIBUTION  # declared an OSM source
    assert MaskSource(bbox=EXTRACT_BBOX).attribution() == OSM_ATTRIBUTION  # Overpass
