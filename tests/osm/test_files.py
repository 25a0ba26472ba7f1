"""osm/files.py on its own: reading OSM extracts and vector layers, declared extents, AOI files."""

from __future__ import annotations

import bz2
import tempfile
import warnings
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from pyproj import Transformer

from satgen_geo.errors import CRSError, InputFileError
from satgen_geo.grid import aoi_from_bbox
from satgen_geo.osm.files import RAW_COLUMNS, file_bounds, is_osm_file, read_aoi, read_features
from tests.conftest import FIXTURES, SAMPLE_AOI, SAMPLE_PBF

EXTRACT_BBOX = (26.93, 60.52, 26.97, 60.54)
X0, Y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(26.95, 60.53)


def test_osm_names() -> None:
    assert all(map(is_osm_file, ["a.osm", "b.OSM.PBF", "c.pbf", "d.osm.bz2", Path("x/e.osm")]))
    assert not any(map(is_osm_file, ["a.gpkg", "b.geojson", "c.osm.zip", "d.bz2"]))


def test_pbf_features_and_bbox_filter() -> None:
    everything = read_features(SAMPLE_PBF)
    assert list(everything.columns) == [*RAW_COLUMNS, "geometry"] and everything.crs.to_epsg() == 4326
    assert everything["highway"].notna().sum() > 300 and everything["building"].notna().sum() > 2000
    corner = aoi_from_bbox((26.93, 60.52, 26.94, 60.525))
    part = read_features(SAMPLE_PBF, corner)
    assert 0 < len(part) < len(everything) / 4
    assert part.geometry.intersects(shapely.box(26.93, 60.52, 26.94, 60.525)).all()


def test_declared_extents() -> None:
    assert file_bounds(SAMPLE_PBF) == pytest.approx(EXTRACT_BBOX, abs=1e-6)  # the PBF header's bounds
    assert file_bounds(FIXTURES / "kotka_clip.osm") is None  # no <bounds> element: only its features tell


def test_vector_extent_from_lines_and_polygons_only(tmp_path: Path) -> None:
    path = tmp_path / "layers.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.LineString([(X0, Y0), (X0 + 800, Y0)])], crs=3857).to_file(path, layer="roads")
    gpd.GeoDataFrame(geometry=[shapely.box(X0, Y0 + 100, X0 + 40, Y0 + 140)], crs=3857).to_file(path, layer="houses")
    gpd.GeoDataFrame(geometry=[shapely.Point(X0 + 50_000, Y0)], crs=3857).to_file(path, layer="poi")  # not drawn
    west, south, east, north = file_bounds(path, param="roads_file")
    to_wgs84 = Transformer.from_crs(3857, 4326, always_xy=True)
    assert (west, south) == pytest.approx(to_wgs84.transform(X0, Y0), abs=1e-9)
    assert (east, north) == pytest.approx(to_wgs84.transform(X0 + 800, Y0 + 140), abs=1e-9)
    frame = read_features(path)
    assert sorted(frame["highway"].dropna()) == ["road"] and sorted(frame["building"].dropna()) == ["yes"]
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=3067)).to_file(empty)
    assert file_bounds(empty) is None


def test_vector_without_crs_names_its_param(tmp_path: Path) -> None:
    path = tmp_path / "drawn.shp"
    with warnings.catch_warnings():  # writing a file without a CRS is the point here
        warnings.simplefilter("ignore", UserWarning)
        gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (100, 0)])]).to_file(path)
    for call in (lambda: file_bounds(path, param="roads_file"), lambda: read_features(path, param="roads_file")):
        with pytest.raises(CRSError, match="has no CRS") as info:
            call()
        assert info.value.param == "roads_file"


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "g.osm.pbf"
    garbage.write_bytes(b"\x00\x01 not a protobuf" * 100)
    with pytest.raises(InputFileError, match="supported formats") as info:
        read_features(garbage, param="buildings_file")
    assert info.value.param == "buildings_file"
    with pytest.raises(InputFileError, match="does not exist") as info:
        file_bounds(tmp_path / "missing.osm.pbf", param="osm_file")
    assert info.value.param == "osm_file"


def test_bz2_is_read_through_a_temporary_copy_that_goes_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    packed = tmp_path / "clip.osm.bz2"
    packed.write_bytes(bz2.compress((FIXTURES / "kotka_clip.osm").read_bytes()))
    assert len(read_features(packed)) == len(read_features(FIXTURES / "kotka_clip.osm")) > 0
    assert list(scratch.iterdir()) == []
    broken = tmp_path / "broken.osm.bz2"
    broken.write_bytes(packed.read_bytes()[:200])
    with pytest.raises(InputFileError, match="cannot decompress"):
        read_features(broken)
    assert list(scratch.iterdir()) == []


def test_aoi_file(tmp_path: Path) -> None:
    aoi = read_aoi(SAMPLE_AOI)
    assert aoi.geometry.geom_type in ("Polygon", "MultiPolygon") and aoi.geometry.is_valid
    lines = tmp_path / "lines.geojson"
    gpd.GeoDataFrame(geometry=[shapely.LineString([(26.9, 60.5), (27.0, 60.6)])], crs=4326).to_file(lines)
    with pytest.raises(InputFileError, match="no polygons") as info:
        read_aoi(lines)
    assert info.value.param == "aoi_file"
    with pytest.raises(InputFileError, match="does not exist") as info:
        read_aoi(tmp_path / "missing.geojson")
    assert info.value.param == "aoi_file"
