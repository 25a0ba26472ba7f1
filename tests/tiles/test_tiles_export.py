"""Tile exports: MBTiles that GDAL reads, PMTiles with the same tiles, resumable, bounded, and ``satgen tiles``."""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import mercantile
import numpy as np
import pytest
import rasterio
from pmtiles.reader import MemorySource, Reader, all_tiles
from pmtiles.tile import TileType
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from satgen_geo.errors import CancelledError, ConfigError, LimitError, OutputError
from satgen_geo.mask import MaskSource
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.tiles import TileConfig, TileSource, decode_tile
from satgen_geo.tiles.export import export_tiles
from satgen_geo.tiles.xyz import count_tiles, tile_bounds
from tests.conftest import run_cli
from tests.tiles.conftest import EXACT, SAMPLE_OSM, centre_tile

#: 33 tiles: zoom 15 renders every chunk of the sample area, zoom 13 (below the minimum zoom 14) reads them cached.
ZOOMS = (13, 15)
#: A part of the sample area: few chunks and tiles.
SMALL_BBOX = (26.945, 60.527, 26.955, 60.533)

Tiles = dict[tuple[int, int, int], bytes]


@pytest.fixture(scope="module")
def source(tiny: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> TileSource:
    """The sample extract's tile source with a cache shared by this module's tests (chunks rendered once)."""
    config = TileConfig(chunk_px=512, cache_dir=tmp_path_factory.mktemp("export-cache"))
    return TileSource(MaskSource(osm=SAMPLE_OSM), tiny, config, EXACT)


@pytest.fixture(scope="module")
def mbtiles(source: TileSource, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted MBTiles export of :data:`ZOOMS`, the first export on the empty cache."""
    path = tmp_path_factory.mktemp("export") / "area.mbtiles"
    result = export_tiles(source, path, ZOOMS)
    assert result.chunks == len(source.plan) and result.resumed == 0 and result.file_bytes == path.stat().st_size
    return path


def _tiles(path: Path) -> Tiles:
    """An MBTiles file's tiles by XYZ address."""
    with closing(sqlite3.connect(path)) as db:
        return {(z, x, (1 << z) - 1 - row): data for z, x, row, data in db.execute("SELECT * FROM tiles")}


def _metadata(path: Path) -> dict[str, str]:
    with closing(sqlite3.connect(path)) as db:
        return dict(db.execute("SELECT name, value FROM metadata"))


def _inside(box: tuple[float, float, float, float], bounds: Any) -> bool:
    return bounds.left <= box[0] and bounds.bottom <= box[1] and box[2] <= bounds.right and box[3] <= bounds.top


def _total(source: TileSource, zooms: tuple[int, int]) -> int:
    return sum(count_tiles(source.bounds, z) for z in range(zooms[0], zooms[1] + 1))


def test_mbtiles_opens_in_gdal_with_the_area_and_the_served_pixels(source: TileSource, mbtiles: Path) -> None:
    tiles = _tiles(mbtiles)
    assert len(tiles) == _total(source, ZOOMS) and {z for z, _, _ in tiles} == {13, 14, 15}
    metadata = _metadata(mbtiles)
    assert {k: metadata[k] for k in ("format", "minzoom", "maxzoom", "type")} == {
        "format": "png", "minzoom": "13", "maxzoom": "15", "type": "baselayer"}
    assert metadata["attribution"] == source.attribution and metadata["center"].endswith(",15")
    with rasterio.open(mbtiles) as ds:
        assert ds.driver == "MBTiles" and ds.crs.to_epsg() == 3857 and ds.count == 4
        expected = transform_bounds("EPSG:4326", ds.crs, *source.bounds)
        tile_m = 2 * math.pi * 6378137.0 / 2**15
        assert np.allclose(tuple(ds.bounds), expected, atol=tile_m)
        inner = [(x, y) for z, x, y in tiles if z == 15 and _inside(tile_bounds(mercantile.Tile(x, y, z)), ds.bounds)]
        assert len(inner) >= 4
        for x, y in inner:  # GDAL reads zoom 15 at full resolution: each tile's pixels, in their place
            window = from_bounds(*tile_bounds(mercantile.Tile(x, y, 15)), ds.transform)
            pixels = ds.read(window=Window(round(window.col_off), round(window.row_off), 256, 256))
            assert np.array_equal(pixels, source.tile(15, x, y))
    low = centre_tile(source, 13)
    assert np.array_equal(decode_tile(tiles[(13, low.x, low.y)]), source.tile(13, low.x, low.y))


def test_pmtiles_holds_the_mbtiles_tiles_and_the_metadata(source: TileSource, mbtiles: Path, tmp_path: Path) -> None:
    result = export_tiles(source, tmp_path / "area.pmtiles", ZOOMS)
    assert result.chunks == 0 and result.tiles == len(_tiles(mbtiles))
    assert [p.name for p in tmp_path.iterdir()] == ["area.pmtiles"]  # no staging file left
    get_bytes = MemorySource((tmp_path / "area.pmtiles").read_bytes())
    reader = Reader(get_bytes)
    header, metadata = reader.header(), reader.metadata()
    assert (header["min_zoom"], header["max_zoom"], header["center_zoom"]) == (13, 15, 15)
    assert header["tile_type"] == TileType.PNG and header["clustered"]
    west, south, east, north = source.bounds
    assert np.allclose([header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")],
                       [west, south, east, north], atol=1e-6)
    assert metadata["attribution"] == source.attribution and metadata["format"] == "png"
    assert metadata["bounds"] == _metadata(mbtiles)["bounds"]
    assert dict(all_tiles(get_bytes)) == _tiles(mbtiles)


def test_an_interrupted_export_resumes_with_the_tiles_left(source: TileSource, mbtiles: Path, tmp_path: Path) -> None:
    output, staging = tmp_path / "area.mbtiles", tmp_path / "area.mbtiles.partial"
    ticks: list[int] = []
    with pytest.raises(CancelledError):
        export_tiles(source, output, ZOOMS, progress=lambda done, total, stage: ticks.append(done),
                     cancel=lambda: len(ticks) > 12)
    assert not output.exists() and len(_tiles(staging)) == 12

    with pytest.raises(ConfigError) as other:  # another export's staging file is refused, and kept
        export_tiles(source, output, (14, 15))
    assert other.value.param == "output" and "different zooms" in str(other.value)
    assert len(_tiles(staging)) == 12

    ticks.clear()
    result = export_tiles(source, output, ZOOMS, progress=lambda done, total, stage: ticks.append(done))
    total = _total(source, ZOOMS)
    assert ticks[0] == 12 and ticks[-1] == total and len(ticks) == 1 + total - 12
    assert (result.resumed, result.tiles) == (12, total)
    assert not staging.exists()
    assert _tiles(output) == _tiles(mbtiles) and _metadata(output) == _metadata(mbtiles)


@pytest.mark.parametrize(("name", "zooms", "options", "param"), [
    ("area.tif", ZOOMS, {}, "output"),
    ("area.mbtiles", (15, 13), {}, "zoom"),
    ("area.mbtiles", (13, 25), {}, "zoom"),
    ("area.mbtiles", (13, 20), {}, "zoom"),  # above the source's maximum zoom 19
    ("area.mbtiles", (11, 12), {}, "zoom"),  # nothing below the minimum zoom 14 renders chunks
    ("area.pmtiles", ZOOMS, {"max_tiles": 30}, "max_tiles"),
    ("area.mbtiles", ZOOMS, {"fmt": "gif"}, "tile"),
])
def test_bad_exports_stop_before_any_work(source: TileSource, tmp_path: Path, name: str, zooms: tuple[int, int],
                                          options: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError) as caught:
        export_tiles(source, tmp_path / name, zooms, **options)
    assert caught.value.param == param and "\n" not in str(caught.value)
    if param == "max_tiles":
        assert isinstance(caught.value, LimitError) and "33 tiles, over the limit of 30" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_staging_file_in_use_is_refused(source: TileSource, tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "area.mbtiles.partial")) as other:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(OutputError) as caught:
            export_tiles(source, tmp_path / "area.mbtiles", ZOOMS)
    assert caught.value.param == "output" and "being written by another export" in str(caught.value)


def test_lower_zooms_need_the_higher_zooms_chunks_still_cached(make_source: Any, tmp_path: Path) -> None:
    source = make_source(MaskSource(osm=SAMPLE_OSM, bbox=SMALL_BBOX))
    top = count_tiles(source.bounds, 14)

    def evict(done: int, total: int, stage: str) -> None:  # the chunk cache drops every chunk after zoom 14
        if done == top:
            for chunk in source.cache.folder.rglob("*.tif"):
                chunk.unlink()

    with pytest.raises(LimitError) as caught:
        export_tiles(source, tmp_path / "area.mbtiles", (13, 14), progress=evict)
    assert caught.value.param == "tile_cache" and "raise the tile cache size" in str(caught.value)
    assert not (tmp_path / "area.mbtiles").exists()


def test_cli_exports_with_json_progress_and_refuses_a_reversed_zoom_range(
        tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATGEN_CACHE_DIR", str(tmp_path / "cache"))
    output = tmp_path / "area.mbtiles"
    base = ["tiles", SAMPLE_OSM, "--bbox", ",".join(map(str, SMALL_BBOX)), "--checkpoint", tiny_checkpoint,
            "--device", "cpu", "--backend", "torch", "--precision", "fp32"]
    done = run_cli(*base, "--zoom", "16-17", "-o", output, "--progress", "json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # progress, and the data's warnings
    ticks = [line for line in lines if "stage" in line]
    assert {tick["stage"] for tick in ticks} == {"tiles"} and ticks[-1]["done"] == ticks[-1]["total"] > 10
    assert f"wrote {output} ({ticks[-1]['total']} tiles at zooms 16-17" in done.stderr
    with rasterio.open(output) as ds:
        assert ds.driver == "MBTiles" and ds.read(4).max() == 255
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        assert np.allclose((west, south, east, north), SMALL_BBOX, atol=1e-4)

    reversed_zooms = run_cli(*base, "--zoom", "18-15", "-o", tmp_path / "other.mbtiles")
    assert reversed_zooms.returncode == 1 and reversed_zooms.stderr.count("\n") == 1, reversed_zooms.stderr
    assert reversed_zooms.stderr.startswith("Error: lowest zoom 18 is above highest zoom 15")
    assert reversed_zooms.stderr.rstrip().endswith("(--zoom LOW-HIGH)")
    assert not (tmp_path / "other.mbtiles").exists()
