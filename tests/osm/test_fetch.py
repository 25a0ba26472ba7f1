"""fetch_osm against a fake Overpass server on 127.0.0.1; no real network is used.

The server's 200 body is ``fixtures/overpass_kotka_clip.json``, a recorded Overpass-style
response built from the real Kotka extract by ``fixtures/make_overpass_fixture.py``
(© OpenStreetMap contributors, ODbL 1.0).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import osmnx as ox
import pytest
from pyproj import CRS
from shapely.geometry import box

from satgen_geo.errors import AreaTooLargeError, OSMDownloadError, SatgenError
from satgen_geo.grid import AOI, WGS84, aoi_from_bbox
from satgen_geo.osm.fetch import OverpassConfig, fetch_osm
from satgen_geo.osm.files import RAW_COLUMNS as COLUMNS
from tests.conftest import FIXTURES
from tests.fake_overpass import FakeOverpass

FIXTURE = FIXTURES / "overpass_kotka_clip.json"
CLIP = (26.945, 60.525, 26.955, 60.530)
def _fixture_counts() -> tuple[int, int]:
    ways = [e for e in json.loads(FIXTURE.read_text(encoding="utf-8"))["elements"] if e["type"] == "way"]
    return sum("highway" in w["tags"] for w in ways), sum("building" in w["tags"] for w in ways)


@pytest.fixture
def overpass() -> Iterator[FakeOverpass]:
    fake = FakeOverpass()
    yield fake
    fake.shutdown()


@pytest.fixture
def config(overpass: FakeOverpass, tmp_path: Path) -> OverpassConfig:
    return OverpassConfig(url=overpass.url, cache_dir=tmp_path / "cache", timeout_s=5.0, max_retries=2, backoff_s=0.01)


def _cached_files(config: OverpassConfig) -> list[Path]:
    return sorted(config.cache_dir.glob("*.json")) if config.cache_dir.exists() else []


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:32635"])
def test_fetch_returns_roads_and_buildings(
    overpass: FakeOverpass, config: OverpassConfig, crs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    aoi = aoi_from_bbox(CLIP)
    if crs != "EPSG:4326":  # the same area given in UTM, a little larger so it still covers the clip
        utm = aoi.to_crs(CRS.from_user_input(crs))
        aoi = AOI(utm.geometry.buffer(20.0), utm.crs)
    raw = fetch_osm(aoi, config)
    n_highway, n_building = _fixture_counts()
    assert list(raw.columns) == [*COLUMNS, "geometry"]
    assert raw.crs == WGS84
    assert list(raw.index) == list(range(len(raw)))
    assert all(raw[col].dtype == object for col in COLUMNS)
    assert raw["highway"].notna().sum() == n_highway > 0
    assert raw["building"].notna().sum() == n_building > 0
    assert len(raw) == n_highway + n_building  # the fixture's tagged crossing nodes are dropped
    assert set(raw.geom_type[raw["building"].notna()]) <= {"Polygon", "MultiPolygon"}
    assert "LineString" in set(raw.geom_type[raw["highway"].notna()])
    assert raw.total_bounds[0] > 26.9 and raw.total_bounds[3] < 60.6
    assert overpass.interpreter_requests == ["POST"]
    assert capsys.readouterr().out == ""  # osmnx did not print


def test_429_then_success_retries_with_backoff(
    overpass: FakeOverpass, config: OverpassConfig, caplog: pytest.LogCaptureFixture
) -> None:
    overpass.script = [(429, None), (429, None)]
    with caplog.at_level(logging.WARNING, logger="satgen_geo.osm.fetch"):
        start = time.monotonic()
        raw = fetch_osm(aoi_from_bbox(CLIP), config)
    assert time.monotonic() - start < 5.0  # osmnx's own 55 s pause on 429 was not used
    assert len(overpass.interpreter_requests) == 3
    assert len(raw) == sum(_fixture_counts())
    retries = [r for r in caplog.records if "429" in r.getMessage() and "retry" in r.getMessage()]
    assert len(retries) == 2
    cached = _cached_files(config)
    assert len(cached) == 1  # only the 200 response was cached
    assert json.loads(cached[0].read_text())["elements"] == json.loads(FIXTURE.read_text())["elements"]


def test_always_503_raises_after_all_retries(overpass: FakeOverpass, config: OverpassConfig) -> None:
    overpass.default = (503, None)
    with pytest.raises(OSMDownloadError, match="503") as info:
        fetch_osm(aoi_from_bbox(CLIP), config)
    assert len(overpass.interpreter_requests) == config.max_retries + 1
    # core messages name the concept (a local OSM extract), the front end adds its own flag for `param`
    assert "\n" not in str(info.value) and "local OSM extract" in str(info.value) and info.value.param == "osm_file"
    assert "--" not in str(info.value)
    assert _cached_files(config) == []
    # the error was not cached: once the server recovers, the next fetch asks it again
    overpass.default = (200, FIXTURE.read_bytes())
    assert len(fetch_osm(aoi_from_bbox(CLIP), config)) == sum(_fixture_counts())
    assert len(overpass.interpreter_requests) == config.max_retries + 2


def test_client_error_is_not_retried(overpass: FakeOverpass, config: OverpassConfig) -> None:
    overpass.default = (400, b"<html>parse error</html>")
    with pytest.raises(OSMDownloadError, match="400"):
        fetch_osm(aoi_from_bbox(CLIP), config)
    assert len(overpass.interpreter_requests) == 1


def test_timeout_and_dropped_connection_are_retried(overpass: FakeOverpass, config: OverpassConfig) -> None:
    overpass.script = [("sleep", 1.0), ("drop", None)]
    quick = OverpassConfig(**{**config.__dict__, "timeout_s": 0.3})
    raw = fetch_osm(aoi_from_bbox(CLIP), quick)
    assert len(overpass.interpreter_requests) == 3
    assert len(raw) == sum(_fixture_counts())


def test_failed_query_remark_raises_and_is_not_cached(overpass: FakeOverpass, config: OverpassConfig) -> None:
    remark = {"version": 0.6, "elements": [], "remark": 'runtime error: Query timed out in "query" at line 1'}
    overpass.script = [(200, json.dumps(remark).encode())]
    with pytest.raises(OSMDownloadError, match="timed out"):
        fetch_osm(aoi_from_bbox(CLIP), config)
    assert len(overpass.interpreter_requests) == 1
    assert _cached_files(config) == []


def test_unreachable_server_raises_one_line_with_offline_hint(tmp_path: Path) -> None:
    url = _closed_port_url()
    config = OverpassConfig(url=url, cache_dir=tmp_path, max_retries=3, backoff_s=5.0)
    start = time.monotonic()
    with pytest.raises(OSMDownloadError) as info:
        fetch_osm(aoi_from_bbox(CLIP), config)
    message = str(info.value)
    assert time.monotonic() - start < 2.0  # refused connections fail fast, without back-off
    assert "cannot reach Overpass" in message and url in message and "local OSM extract" in message
    assert info.value.param == "osm_file" and "--" not in message
    assert "refused" in message.lower() and "\n" not in message


def test_cached_response_works_offline(overpass: FakeOverpass, config: OverpassConfig) -> None:
    first = fetch_osm(aoi_from_bbox(CLIP), config)
    overpass.shutdown()
    second = fetch_osm(aoi_from_bbox(CLIP), config)
    assert len(overpass.interpreter_requests) == 1
    assert second.equals(first)
    uncached = OverpassConfig(**{**config.__dict__, "use_cache": False})
    with pytest.raises(OSMDownloadError, match="cannot reach"):
        fetch_osm(aoi_from_bbox(CLIP), uncached)


def test_area_limit_checked_before_any_request(overpass: FakeOverpass, config: OverpassConfig) -> None:
    with pytest.raises(AreaTooLargeError, match="download limit") as info:
        fetch_osm(aoi_from_bbox((26.0, 60.0, 27.0, 61.0)), config)
    assert "50" in str(info.value) and "local OSM extract" in str(info.value) and "--" not in str(info.value)
    assert info.value.param == "max_area_km2"
    with pytest.raises(AreaTooLargeError, match="download limit"):  # 360° wide: its area used to measure 0 km2
        fetch_osm(aoi_from_bbox((-180.0, -85.0, 180.0, 85.0)), config)
    assert overpass.interpreter_requests == [] and overpass.other_requests == []


def test_no_features_gives_empty_frame(overpass: FakeOverpass, config: OverpassConfig) -> None:
    overpass.default = (200, b'{"version": 0.6, "elements": []}')
    raw = fetch_osm(aoi_from_bbox(CLIP), config)
    assert raw.empty and list(raw.columns) == [*COLUMNS, "geometry"]
    assert raw.crs == WGS84
    assert len(overpass.interpreter_requests) == 1


def test_unwritable_cache_folder_is_a_download_error(overpass: FakeOverpass, config: OverpassConfig) -> None:
    blocker = config.cache_dir
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(OSMDownloadError, match="cache folder"):
        fetch_osm(aoi_from_bbox(CLIP), config)


def test_non_polygon_aoi_is_rejected(config: OverpassConfig) -> None:
    with pytest.raises(SatgenError, match="polygon"):
        fetch_osm(AOI(box(*CLIP).exterior, WGS84), config)


def test_osmnx_settings_and_getaddrinfo_restored(overpass: FakeOverpass, config: OverpassConfig) -> None:
    names = ["overpass_url", "cache_folder", "use_cache", "requests_timeout", "overpass_rate_limit",
             "requests_kwargs", "doh_url_template", "overpass_settings", "log_console", "log_file"]
    before = {name: getattr(ox.settings, name) for name in names}
    getaddrinfo = socket.getaddrinfo
    fetch_osm(aoi_from_bbox(CLIP), config)
    overpass.default = (503, None)
    with pytest.raises(OSMDownloadError):
        fetch_osm(aoi_from_bbox(CLIP), OverpassConfig(**{**config.__dict__, "use_cache": False}))
    assert {name: getattr(ox.settings, name) for name in names} == before
    assert socket.getaddrinfo is getaddrinfo
