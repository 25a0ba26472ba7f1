"""Tiles of a source: deterministic in any order and after a restart, seamless, bounded, transparent outside."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import mercantile
import numpy as np
import pytest
import rasterio

from satgen_geo.errors import AOIError, LimitError, OSMDownloadError
from satgen_geo.evaluate.seams import seam_score
from satgen_geo.mask import MaskSource
from satgen_geo.model.loaded import load_model
from satgen_geo.osm.fetch import OverpassConfig
from satgen_geo.tiles import TileConfig, TileError, TileSource, TileZoomError
from tests.api.api_helpers import closed_port_url
from tests.fake_overpass import FakeOverpass
from tests.tiles.conftest import EXACT, SAMPLE_OSM, centre_tile

Make = Callable[..., TileSource]


def _block(source: TileSource, first: mercantile.Tile, side: int, order: list[tuple[int, int]] | None = None) -> np.ndarray:
    """``side`` × ``side`` tiles from ``first`` stitched into one RGBA image, fetched in ``order``."""
    order = order or [(r, c) for r in range(side) for c in range(side)]
    image = np.zeros((4, 256 * side, 256 * side), dtype=np.uint8)
    for r, c in order:
        tile = source.tile(first.z, first.x + c, first.y + r)
        assert tile is not None
        image[:, 256 * r:256 * (r + 1), 256 * c:256 * (c + 1)] = tile
    return image


def test_tiles_are_identical_in_any_order_and_after_a_restart(make_source: Make, tmp_path: Path) -> None:
    first = make_source(cache_dir=tmp_path / "one")
    start = centre_tile(first, 17)
    forward = _block(first, start, 2)
    second = make_source(cache_dir=tmp_path / "two")  # a fresh cache: every chunk rendered again
    backward = _block(second, start, 2, order=[(1, 1), (0, 1), (1, 0), (0, 0)])
    assert np.array_equal(forward, backward)
    restarted = make_source(cache_dir=tmp_path / "one")  # a new server on the first cache
    assert restarted.key == first.key and not restarted.missing(restarted.tile_read(start.z, start.x, start.y))
    assert np.array_equal(_block(restarted, start, 2), forward)
    assert forward[3].min() == 255 and forward[:3].std() > 5  # opaque imagery inside the area


def test_neighbouring_tiles_meet_without_seams(tmp_path: Path) -> None:
    """With the shipped model (real texture): tile borders and chunk borders are as smooth as any other line."""
    source = TileSource(MaskSource(osm=SAMPLE_OSM), load_model(None, "cpu"), TileConfig(cache_dir=tmp_path), EXACT)
    start = centre_tile(source, 17)
    first = mercantile.Tile(start.x - 1, start.y - 1, 17)
    image = _block(source, first, 3)[:3].astype(np.float32)
    assert 0.9 < seam_score(image, tile_px=256, overlap_px=0) < 1.15  # lines every 256 px: the tile borders
    reads = [source.tile_read(17, first.x + c, first.y + r) for r in range(3) for c in range(3)]
    assert len({chunk.id for read in reads for chunk in read.chunks}) > 1  # the block spans chunk borders too


def test_chunks_are_cached_as_cloud_optimized_geotiffs(make_source: Make) -> None:
    source = make_source()
    tile = centre_tile(source, 17)
    read = source.tile_read(tile.z, tile.x, tile.y)
    assert source.ensure(read) == len(read.chunks) and source.ensure(read) == 0
    with rasterio.open(source.cache.path(read.chunks[0])) as chunk:
        assert chunk.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and chunk.overviews(1)
        assert chunk.crs == source.grid.crs and chunk.res == (1.0, 1.0)


def test_outside_the_area_is_nothing_without_work(make_source: Make) -> None:
    source = make_source()
    assert source.tile(17, 0, 0) is None
    west, south, east, north = source.bounds
    assert source.tile_read(*_zxy(mercantile.tile(east + 0.05, north + 0.02, 17))) is None
    assert not list(source.cache.folder.rglob("*.tif"))


def test_low_zooms_come_from_cached_chunks_or_are_refused(make_source: Make) -> None:
    source = make_source(min_zoom=15)
    low = centre_tile(source, 13)
    with pytest.raises(TileZoomError, match="below the minimum zoom 15") as err:
        source.tile(*_zxy(low))
    assert err.value.param == "zoom"
    read = source.tile_read(*_zxy(low))
    for chunk in read.chunks:  # render them as a tile at the minimum zoom would
        source.cache.ensure(chunk, lambda cancel, chunk=chunk: source._render(chunk, cancel))
    tile = source.tile(*_zxy(low))
    assert tile is not None and tile[3].max() == 255 and tile[3].min() == 0  # the area, and transparency around it


def test_zooms_above_the_maximum_do_not_exist(make_source: Make) -> None:
    source = make_source(max_zoom=18)
    with pytest.raises(TileError, match="above this source's maximum zoom 18"):
        source.tile(*_zxy(centre_tile(source, 19)))


def test_tile_work_is_bounded(make_source: Make) -> None:
    source = make_source(max_render_chunks=1, min_zoom=10)
    with pytest.raises(LimitError, match="over the limit of 1") as err:
        source.tile(*_zxy(centre_tile(source, 14)))
    assert err.value.param == "max_render_chunks"
    with pytest.raises(LimitError, match="megapixel grid, over the limit") as err:
        make_source(max_pixels=1_000_000)
    assert err.value.param == "max_pixels"


def test_the_cache_key_follows_the_data(make_source: Make, tmp_path: Path) -> None:
    copy = tmp_path / SAMPLE_OSM.name
    copy.write_bytes(SAMPLE_OSM.read_bytes())
    before = make_source(MaskSource(osm=copy)).key
    os.utime(copy, ns=(0, 0))
    assert make_source(MaskSource(osm=copy)).key != before
    assert make_source(MaskSource(osm=copy, bbox=(26.94, 60.52, 26.96, 60.53))).key != before


def test_a_source_without_an_extent_needs_an_area(make_source: Make, tmp_path: Path) -> None:
    empty = tmp_path / "roads.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(AOIError, match="declare no extent") as err:
        make_source(MaskSource(roads=empty))
    assert err.value.param == "bbox"


def test_tilejson_describes_the_layer(make_source: Make) -> None:
    source = make_source()
    doc = source.tilejson("http://host/tiles/{z}/{x}/{y}.png")
    assert doc["tilejson"] == "3.0.0" and doc["tiles"] == ["http://host/tiles/{z}/{x}/{y}.png"]
    assert doc["minzoom"] == 14 and doc["maxzoom"] == 19 and doc["center"][2] == source.native_zoom == 17
    assert doc["bounds"] == pytest.approx([26.93, 60.52, 26.97, 60.54], abs=1e-6)
    assert "© OpenStreetMap contributors" in doc["attribution"] and "synthetic" in doc["attribution"]


def _zxy(tile: mercantile.Tile) -> tuple[int, int, int]:
    return tile.z, tile.x, tile.y


def test_an_overpass_source_downloads_per_chunk_and_fails_clearly_offline(make_source: Make, tmp_path: Path) -> None:
    clip = (26.945, 60.525, 26.955, 60.530)  # what the fake server's recorded answer covers
    fake = FakeOverpass()
    try:
        overpass = OverpassConfig(url=fake.url, cache_dir=tmp_path / "osm", timeout_s=5.0, max_retries=0)
        source = make_source(MaskSource(bbox=clip, overpass=overpass))
        tile = source.tile(*_zxy(centre_tile(source, 17)))
    finally:
        fake.shutdown()
    assert tile is not None and tile[3].max() == 255 and len(fake.interpreter_requests) >= 1
    assert "OpenStreetMap" in source.attribution
    offline = OverpassConfig(url=closed_port_url(), cache_dir=tmp_path / "none", use_cache=False, timeout_s=2.0,
                             max_retries=0)
    source = make_source(MaskSource(bbox=clip, overpass=offline), cache_dir=tmp_path / "other")
    with pytest.raises(OSMDownloadError):
        source.tile(*_zxy(centre_tile(source, 17)))


def test_an_osm_store_gives_the_pixels_of_its_extract(make_source: Make, tmp_path: Path) -> None:
    from satgen_geo.osm.extract import extract_store

    store = extract_store(SAMPLE_OSM, tmp_path / "kotka.gpkg").path
    from_store, from_file = make_source(MaskSource(osm=store)), make_source(MaskSource(osm=SAMPLE_OSM))
    assert from_store.grid == from_file.grid  # the same area on the same lattice
    tile = _zxy(centre_tile(from_file, 17))
    assert np.array_equal(from_store.tile(*tile), from_file.tile(*tile))
