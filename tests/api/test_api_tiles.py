"""The tile endpoints over a real socket: tiles, TileJSON, zoom rules, coalesced renders, the bounded queue."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mercantile
import numpy as np
import pytest
from api_helpers import serve
from PIL import Image

from satgen_geo.api import ApiSettings, create_app
from satgen_geo.mask import MaskSource
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.osm.fetch import OverpassConfig
from satgen_geo.tiles import TileConfig, decode_tile
from tests.conftest import ROOT

SAMPLE = MaskSource(osm=ROOT / "sample_aoi" / "kotka-suburb.osm.pbf")
CENTRE = mercantile.tile(26.95, 60.53, 17)


def _tiles_app(tiny: LoadedModel, offline: OverpassConfig, cache: Path, **settings: Any) -> Any:
    return create_app(ApiSettings(device="cpu", workers=1, overpass=offline, backend="torch", precision="fp32",
                                  tiles=SAMPLE, tile_config=TileConfig(chunk_px=512, cache_dir=cache, min_zoom=15),
                                  **settings), model=tiny)


@pytest.fixture()
def tiles(tiny: LoadedModel, offline: OverpassConfig, tmp_path: Path) -> Iterator[httpx.Client]:
    with serve(_tiles_app(tiny, offline, tmp_path)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_a_tile_is_a_png_of_synthetic_imagery(tiles: httpx.Client) -> None:
    response = tiles.get(f"/tiles/17/{CENTRE.x}/{CENTRE.y}.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert "max-age" in response.headers["cache-control"]
    pixels = decode_tile(response.content)
    assert pixels.shape == (4, 256, 256) and pixels[3].min() == 255 and pixels[:3].std() > 5


@pytest.mark.parametrize(("fmt", "mode"), [("webp", "RGB"), ("jpg", "RGB")])
def test_other_formats_carry_the_same_picture(tiles: httpx.Client, fmt: str, mode: str) -> None:
    png = decode_tile(tiles.get(f"/tiles/17/{CENTRE.x}/{CENTRE.y}.png").content)[:3].astype(int)
    response = tiles.get(f"/tiles/17/{CENTRE.x}/{CENTRE.y}.{fmt}")
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.mode == mode and image.size == (256, 256)
        lossy = np.asarray(image.convert("RGB")).transpose(2, 0, 1).astype(int)
    assert np.abs(lossy.mean(axis=(1, 2)) - png.mean(axis=(1, 2))).max() < 3  # lossy, but the same image
    assert np.corrcoef(lossy.ravel(), png.ravel())[0, 1] > 0.8


def test_outside_the_area_is_a_transparent_tile(tiles: httpx.Client) -> None:
    response = tiles.get("/tiles/17/0/0.png")
    assert response.status_code == 200 and decode_tile(response.content)[3].max() == 0


def test_tilejson_points_at_this_server(tiles: httpx.Client) -> None:
    doc = tiles.get("/tiles/tilejson.json", params={"format": "webp"}).json()
    assert doc["tiles"] == [f"{tiles.base_url}/tiles/{{z}}/{{x}}/{{y}}.webp".replace("//tiles", "/tiles")]
    assert doc["minzoom"] == 15 and doc["maxzoom"] == 19 and "OpenStreetMap" in doc["attribution"]


@pytest.mark.parametrize(("path", "status", "param"), [
    ("/tiles/12/2354/1177.png", 422, "zoom"),  # below the minimum zoom, nothing cached
    ("/tiles/25/0/0.png", 404, "tile"),
    ("/tiles/3/9/0.png", 404, "tile"),
    ("/tiles/20/0/0.png", 404, "zoom"),  # above the maximum zoom
])
def test_bad_tiles_get_one_line_json_errors(tiles: httpx.Client, path: str, status: int, param: str) -> None:
    response = tiles.get(path)
    assert response.status_code == status and response.json()["param"] == param
    assert "\n" not in response.json()["detail"]


def test_a_server_without_a_tile_source_says_so(client: httpx.Client) -> None:
    response = client.get("/tiles/17/0/0.png")
    assert response.status_code == 404 and "no tile source" in response.json()["detail"]


def test_concurrent_requests_render_each_chunk_once(tiles: httpx.Client, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    block = [(CENTRE.x + dx, CENTRE.y + dy) for dx in range(2) for dy in range(2)] * 2  # 8 requests, 4 tiles
    statuses: list[int] = []
    with caplog.at_level(logging.INFO, logger="satgen_geo.engine"):
        threads = [threading.Thread(target=lambda x=x, y=y: statuses.append(tiles.get(f"/tiles/17/{x}/{y}.png").status_code))
                   for x, y in block]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    renders = [r for r in caplog.records if r.name == "satgen_geo.engine" and r.getMessage().startswith("rendered")]
    chunks = list(tmp_path.rglob("chunks/*.tif"))  # the fixture's cache
    assert statuses == [200] * 8 and len(renders) == len(chunks) >= 1


def test_a_full_tile_queue_answers_503_with_retry_after(tiny: LoadedModel, offline: OverpassConfig, tmp_path: Path) -> None:
    app = _tiles_app(tiny, offline, tmp_path, queue_size=1, tile_queue_size=1)
    far = [(CENTRE.x + 4 * k, CENTRE.y) for k in range(-1, 2)]  # tiles of different chunks
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        responses: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda x=x, y=y: responses.append(client.get(f"/tiles/17/{x}/{y}.png")))
                   for x, y in far]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    busy = [r for r in responses if r.status_code == 503]
    assert busy and all("retry-after" in r.headers for r in busy)
    assert all(r.status_code in (200, 503) for r in responses)
