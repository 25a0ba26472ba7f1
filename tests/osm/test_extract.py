"""``osm extract``: the PBF streamed into the store, read back by bbox, drawing the same mask as the PBF.

Real data: the sample extract (``sample_aoi/kotka-suburb.osm.pbf``, clipped at its bbox, so
many ways miss nodes) and a small hand-written OSM XML with a multipolygon building with a
hole (the sample holds no building relation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely

osmium = pytest.importorskip("osmium")

from satgen_geo.errors import AOIError, CancelledError, InputFileError  # noqa: E402
from satgen_geo.mask import MaskConfig, MaskSource, build_mask  # noqa: E402
from satgen_geo.osm.extract import ExtractConfig, extract_store  # noqa: E402
from satgen_geo.osm.features import select_features  # noqa: E402
from satgen_geo.osm.files import read_features  # noqa: E402
from satgen_geo.osm.store import BUILDINGS_LAYER, ROADS_LAYER, is_store, read_store, store_extent  # noqa: E402
from tests.conftest import SAMPLE_AOI, SAMPLE_PBF  # noqa: E402

SAMPLE_EXTENT = (26.9299999, 60.52, 26.9699999, 60.5399999)  # the PBF header's box
MULTIPOLYGON_OSM = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="satgen-geo tests">
  <bounds minlat="60.5" minlon="26.9" maxlat="60.51" maxlon="26.92"/>
  <node id="1" lat="60.5010" lon="26.9010"/><node id="2" lat="60.5010" lon="26.9050"/>
  <node id="3" lat="60.5040" lon="26.9050"/><node id="4" lat="60.5040" lon="26.9010"/>
  <node id="5" lat="60.5020" lon="26.9020"/><node id="6" lat="60.5020" lon="26.9040"/>
  <node id="7" lat="60.5030" lon="26.9040"/><node id="8" lat="60.5030" lon="26.9020"/>
  <node id="9" lat="60.5060" lon="26.9100"/><node id="10" lat="60.5060" lon="26.9120"/>
  <node id="11" lat="60.5070" lon="26.9120"/>
  <way id="100"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/></way>
  <way id="101"><nd ref="5"/><nd ref="6"/><nd ref="7"/><nd ref="8"/><nd ref="5"/></way>
  <way id="102"><nd ref="9"/><nd ref="10"/><nd ref="11"/><nd ref="9"/>
    <tag k="highway" v="pedestrian"/><tag k="area" v="yes"/></way>
  <way id="103"><nd ref="9"/><nd ref="10"/><nd ref="11"/><nd ref="9"/>
    <tag k="highway" v="service"/><tag k="width" v="5"/></way>
  <way id="104"><nd ref="9"/><nd ref="10"/><nd ref="11"/><nd ref="9"/>
    <tag k="building" v="yes"/><tag k="area" v="no"/></way>
  <relation id="200">
    <member type="way" ref="100" role="outer"/><member type="way" ref="101" role="inner"/>
    <tag k="type" v="multipolygon"/><tag k="building" v="yes"/>
  </relation>
</osm>
"""


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_store(SAMPLE_PBF, tmp_path_factory.mktemp("store") / "kotka.gpkg").path


def _rows(frame) -> set[tuple]:
    """Comparable rows of a raw frame: tags and the geometry's WKB."""
    tags = frame[["highway", "building", "width", "lanes"]].astype("string").fillna("").itertuples(index=False)
    return {(*t, shapely.to_wkb(shapely.normalize(g))) for t, g in zip(tags, frame.geometry.values, strict=True)}


def _roads(frame):  # noqa: ANN001, ANN202
    return frame[frame["highway"].notna()]


def test_the_store_draws_the_same_mask_as_the_pbf(sample_store: Path, tmp_path: Path) -> None:
    config = MaskConfig()
    for name, area in (("aoi", {"aoi": SAMPLE_AOI}), ("extent", {"bbox": SAMPLE_EXTENT})):
        from_pbf = build_mask(tmp_path / f"pbf-{name}.tif", MaskSource(osm=SAMPLE_PBF, **area), config)
        from_store = build_mask(tmp_path / f"store-{name}.tif", MaskSource(osm=sample_store, **area), config)
        assert (from_store.n_roads, from_store.n_buildings) == (from_pbf.n_roads, from_pbf.n_buildings)
        with rasterio.open(from_pbf.path) as a, rasterio.open(from_store.path) as b:
            assert a.transform == b.transform and a.shape == b.shape
            assert int((a.read() != b.read()).sum()) == 0
            assert int((a.dataset_mask() != b.dataset_mask()).sum()) == 0
    assert (from_pbf.n_roads, from_pbf.n_buildings) == (209, 2193)  # the whole extent: 209 of 331 highways are roads


def test_store_features_equal_the_pbf_reader_features(sample_store: Path) -> None:
    pbf = read_features(SAMPLE_PBF)
    store = read_store(sample_store)
    assert _rows(_roads(store)) == _rows(_roads(pbf))  # the same 331 highway lines, coordinates bit for bit
    drawn_pbf, drawn_store = select_features(pbf), select_features(store)
    assert len(drawn_store.buildings) == len(drawn_pbf.buildings) == 2193
    assert shapely.equals(shapely.union_all(drawn_store.buildings.values), shapely.union_all(drawn_pbf.buildings.values))
    # the GDAL reader also yields 22 three-point rings (zero area) from clipped ways: the store drops them at once
    assert len(pbf) - len(store) == 22
    assert list(store.columns) == ["highway", "building", "width", "lanes", "geometry"] and store.crs == "EPSG:4326"
    assert store_extent(sample_store) == SAMPLE_EXTENT and is_store(sample_store) and not is_store(SAMPLE_PBF)


def test_a_bbox_query_reads_exactly_the_intersecting_features(sample_store: Path) -> None:
    everything = read_store(sample_store)
    box = (26.945, 60.525, 26.952, 60.529)
    inside = read_store(sample_store, box)
    expected = everything[shapely.intersects(everything.geometry.values, shapely.box(*box))]
    assert 0 < len(inside) == len(expected) < len(everything)
    assert _rows(inside) == _rows(expected)
    metric = read_store(sample_store, (496_700.0, 6_710_000.0, 497_100.0, 6_710_400.0), crs="EPSG:32635")
    assert 0 < len(metric) < len(everything)
    assert len(read_store(sample_store, (27.5, 61.0, 27.6, 61.1))) == 0


def test_file_index_batches_and_area_filters(sample_store: Path, tmp_path: Path) -> None:
    on_disk = extract_store(SAMPLE_PBF, tmp_path / "disk.gpkg", config=ExtractConfig(node_index="file", batch_features=97))
    assert on_disk.node_index == "file"
    assert _rows(read_store(on_disk.path)) == _rows(read_store(sample_store))
    everything = read_store(sample_store)
    aoi = extract_store(SAMPLE_PBF, tmp_path / "aoi.gpkg", aoi=SAMPLE_AOI)
    area = shapely.box(26.940, 60.525, 26.960, 60.535)
    assert _rows(read_store(aoi.path)) == _rows(everything[shapely.intersects(everything.geometry.values, area)])
    assert store_extent(aoi.path) == (26.94, 60.525, 26.96, 60.535)
    boxed = extract_store(SAMPLE_PBF, tmp_path / "bbox.gpkg", bbox=(26.94, 60.525, 26.96, 60.535))
    assert (boxed.n_roads, boxed.n_buildings) == (aoi.n_roads, aoi.n_buildings) == (118, 584)
    layers = dict(pyogrio.list_layers(boxed.path))
    assert layers == {ROADS_LAYER: "LineString", BUILDINGS_LAYER: "MultiPolygon"}
    assert pyogrio.read_info(boxed.path, layer=ROADS_LAYER)["capabilities"]["fast_spatial_filter"]


def test_a_multipolygon_building_keeps_its_hole(tmp_path: Path) -> None:
    osm = tmp_path / "hole.osm"
    osm.write_text(MULTIPOLYGON_OSM, encoding="utf-8")
    result = extract_store(osm, tmp_path / "hole.gpkg")
    assert (result.n_roads, result.n_buildings) == (1, 1)  # way 103; relation 200 (102 is an area, 104 area=no)
    store, gdal = read_store(result.path), read_features(osm)
    assert _rows(store) == _rows(gdal)
    building = store.geometry[store["building"].notna()].iloc[0]
    assert len(building.geoms[0].interiors) == 1
    buildings = pyogrio.read_dataframe(result.path, layer=BUILDINGS_LAYER)
    assert buildings[["osm_id", "osm_type"]].values.tolist() == [[200, "relation"]]
    mask = build_mask(tmp_path / "mask.tif", MaskSource(osm=result.path, bbox=(26.9, 60.5, 26.92, 60.51)))
    with rasterio.open(mask.path) as src:
        row, col = src.index(*_utm(26.9030, 60.5025))  # the hole's centre
        ring_row, ring_col = src.index(*_utm(26.9015, 60.5025))  # inside the outer ring, outside the hole
        buildings_band = src.read(2)
    assert buildings_band[row, col] == 0 and buildings_band[ring_row, ring_col] == 255


def _utm(lon: float, lat: float) -> tuple[float, float]:
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True).transform(lon, lat)


def test_bad_input_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "out.gpkg"
    broken = tmp_path / "broken.osm.pbf"
    broken.write_bytes(SAMPLE_PBF.read_bytes()[:50_000])
    with pytest.raises(InputFileError, match="cannot read .*broken.osm.pbf as OSM data") as err:
        extract_store(broken, out)
    assert err.value.param == "osm_file"
    with pytest.raises(InputFileError, match="does not exist"):
        extract_store(tmp_path / "missing.osm.pbf", out)
    with pytest.raises(InputFileError, match="is not an OSM extract"):
        extract_store(SAMPLE_AOI, out)
    with pytest.raises(AOIError, match="either a bbox or an AOI"):
        extract_store(SAMPLE_PBF, out, bbox=(26.94, 60.525, 26.96, 60.535), aoi=SAMPLE_AOI)
    with pytest.raises(CancelledError):
        extract_store(SAMPLE_PBF, out, cancel=lambda: True)
    with pytest.raises(InputFileError, match="is not a satgen OSM store") as err:
        read_store(SAMPLE_AOI)
    assert err.value.param == "store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.osm.pbf"]  # no output, no temporary file


def test_progress_counts_bytes_of_both_passes(tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    extract_store(SAMPLE_PBF, tmp_path / "p.gpkg", progress=lambda *a: calls.append(a))
    assert calls and {c[2] for c in calls} == {"extract"}
    total = 2 * SAMPLE_PBF.stat().st_size
    assert all(c[1] == total and 0 <= c[0] <= total for c in calls)
    assert calls[-1][0] >= SAMPLE_PBF.stat().st_size  # both passes read the file
    assert np.all(np.diff([c[0] for c in calls]) >= 0)
