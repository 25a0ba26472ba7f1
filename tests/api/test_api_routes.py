"""The endpoints against a real uvicorn server on 127.0.0.1, talking HTTP with httpx."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from api_helpers import (
    CLIP,
    EDITOR_ORIGIN,
    ORIGIN_32635,
    geotiff,
    json_detail,
    mask_array,
    painted,
    png,
    post_png,
    serve,
)
from PIL import Image

from satgen_geo.api import ApiSettings, classify_painted, create_app
from satgen_geo.errors import CheckpointError
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.osm.fetch import OverpassConfig
from tests.fake_overpass import FakeOverpass

# --------------------------------------------------------------------------- painted masks


def test_classify_painted_rules() -> None:
    pixels = np.array([[
        (255, 0, 0, 255),     # road
        (230, 90, 80, 255),   # antialiased near-red edge: road
        (255, 200, 200, 255), # pale pink: background
        (0, 255, 0, 255),     # building
        (60, 200, 40, 255),   # near-green: building
        (255, 0, 0, 0),       # transparent red: background
        (255, 255, 0, 255),   # yellow: neither
        (0, 0, 0, 255),       # black: background
    ]], dtype=np.uint8)
    mask = classify_painted(Image.fromarray(pixels, "RGBA"))
    assert mask.dtype == np.uint8 and mask.shape == (2, 1, 8)
    assert mask[0, 0].tolist() == [255, 255, 0, 0, 0, 0, 0, 0]
    assert mask[1, 0].tolist() == [0, 0, 0, 255, 255, 0, 0, 0]
    palette = Image.fromarray(pixels[..., :3]).convert("P", palette=Image.ADAPTIVE, colors=8)
    assert classify_painted(palette)[:, 0, [0, 3, 7]].tolist() == [[255, 0, 0], [0, 255, 0]]


def test_generate_png_like_the_editor(client: httpx.Client) -> None:
    painting = painted()
    response = post_png(client, png(painting), deterministic="true")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (300, 200) and image.mode == "RGB"
    rgb = np.asarray(image).astype(np.float64)
    mask = classify_painted(painting)
    roads, background = mask[0] > 0, (mask[0] == 0) & (mask[1] == 0)
    assert roads.sum() > 2000 and background.sum() > 20000
    difference = np.abs(rgb[roads].mean(axis=0) - rgb[background].mean(axis=0))
    assert difference.max() > 1.0, difference


def test_same_seed_same_png_other_seed_differs(client: httpx.Client) -> None:
    data = png(painted())
    first = post_png(client, data, seed=7)
    second = client.post("/generate", files={"file": ("mask.png", data, "image/png")}, data={"seed": "7"})
    other = post_png(client, data, seed=8)
    assert first.status_code == second.status_code == other.status_code == 200
    assert first.content == second.content  # a form field works like the query parameter
    assert not np.array_equal(np.asarray(Image.open(io.BytesIO(first.content))),
                              np.asarray(Image.open(io.BytesIO(other.content))))


def test_jpeg_and_palette_inputs(client: httpx.Client) -> None:
    buffer = io.BytesIO()
    painted(256, 128).convert("RGB").save(buffer, format="JPEG", quality=80)
    jpeg = client.post("/generate", files={"file": ("m.jpg", buffer.getvalue(), "image/jpeg")})
    palette = post_png(client, png(painted(100, 90).convert("RGB").convert("P", palette=Image.ADAPTIVE)))
    assert jpeg.status_code == palette.status_code == 200
    assert Image.open(io.BytesIO(jpeg.content)).size == (256, 128)
    assert Image.open(io.BytesIO(palette.content)).size == (100, 90)


def test_cors_preflight_from_the_editor(client: httpx.Client) -> None:
    response = client.options("/generate", headers={
        "Origin": EDITOR_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    })
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == EDITOR_ORIGIN
    evil = client.options("/generate", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in evil.headers
    error = client.post("/generate", files={"file": ("x.png", b"nope", "image/png")}, headers={"Origin": EDITOR_ORIGIN})
    assert error.headers["access-control-allow-origin"] == EDITOR_ORIGIN  # the editor can read errors


# --------------------------------------------------------------------------- GeoTIFF


def test_geotiff_round_trips_crs_and_transform(client: httpx.Client) -> None:
    response = client.post("/generate/geotiff", files={"file": ("mask.tif", geotiff(mask_array()), "image/tiff")},
                           params={"seed": 3})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/tiff"
    with rasterio.MemoryFile(response.content) as memfile, memfile.open() as src:
        assert src.crs.to_epsg() == 32635
        assert src.transform == ORIGIN_32635
        assert (src.count, src.height, src.width) == (3, 260, 300)
        assert src.dtypes[0] == "uint8"


def test_geotiff_errors_are_4xx_json(client: httpx.Client) -> None:
    three = client.post("/generate/geotiff", files={"file": ("m.tif", geotiff(np.zeros((3, 64, 64), np.uint8)), "image/tiff")})
    assert three.status_code == 422
    detail = json_detail(three)
    assert "3 band(s)" in detail and "2 uint8 bands" in detail
    assert "/tmp" not in detail and "satgen-api-" not in detail  # no server paths leak
    no_crs = client.post("/generate/geotiff", files={"file": ("m.tif", geotiff(mask_array(64, 64), crs=None), "image/tiff")})
    assert no_crs.status_code == 422 and "CRS" in json_detail(no_crs)
    as_png = client.post("/generate/geotiff", files={"file": ("m.png", png(painted()), "image/png")})
    assert as_png.status_code == 415 and "TIFF" in json_detail(as_png)
    big = client.post("/generate/geotiff", files={"file": ("m.tif", geotiff(np.zeros((2, 600, 600), np.uint8)), "image/tiff")})
    assert big.status_code == 413 and "pixels" in json_detail(big)


# --------------------------------------------------------------------------- bbox


def test_bbox_offline_is_503_fast(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.post("/generate/bbox", json={"bbox": [26.945, 60.525, 26.947, 60.526], "deterministic": True})
    assert time.monotonic() - started < 10
    assert response.status_code == 503
    detail = json_detail(response)
    # the hint to work offline names the concept (a local OSM file) and its param, not the CLI's --osm
    assert "Overpass" in detail and "local OSM extract" in detail and "--" not in detail
    assert response.json()["param"] == "osm_file"
    assert int(response.headers["retry-after"]) >= 1


def test_bbox_validation(client: httpx.Client) -> None:
    swapped = client.post("/generate/bbox", json={"bbox": [26.955, 60.525, 26.945, 60.530]})
    assert swapped.status_code == 422 and "swapped" in json_detail(swapped)
    assert swapped.json()["param"] == "bbox"  # the core error's concept, as a JSON field
    three = client.post("/generate/bbox", json={"bbox": [1, 2, 3]})
    assert three.status_code == 422
    assert three.json()["param"] == "bbox" and isinstance(three.json()["detail"], list)  # FastAPI's field errors
    huge = client.post("/generate/bbox", json={"bbox": [26.0, 60.0, 27.0, 61.0]})
    assert huge.status_code == 413 and "pixels" in json_detail(huge)


def test_bbox_with_fake_overpass(tiny: LoadedModel, tmp_path: Path) -> None:
    fake = FakeOverpass()
    try:
        overpass = OverpassConfig(url=fake.url, cache_dir=tmp_path, use_cache=False, timeout_s=5.0, max_retries=0)
        app = create_app(ApiSettings(overpass=overpass, gsd_m=4.0), model=tiny)
        with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            response = client.post("/generate/bbox", json={"bbox": list(CLIP), "deterministic": True})
    finally:
        fake.shutdown()
    assert response.status_code == 200, response.text
    assert len(fake.interpreter_requests) >= 1
    with rasterio.MemoryFile(response.content) as memfile, memfile.open() as src:
        assert src.crs.to_epsg() == 32635  # the area's UTM zone
        assert src.transform.a == 4.0 and src.count == 3
        assert 100 < src.width < 200 and 100 < src.height < 200


# --------------------------------------------------------------------------- model, docs, startup, failures


def test_model_and_docs(client: httpx.Client, tiny: LoadedModel) -> None:
    info = client.get("/model").json()
    assert info["name"] == "tiny" and info["features"] == 8 and info["tile_px"] == 256
    assert info["sha256"] == tiny.sha256 and info["parameter_count"] > 0
    assert "/" not in info["source"]  # the file name only, not the server's path
    assert (info["backend"], info["precision"]) == ("auto", "auto")  # the server's settings, resolved per render
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/generate", "/generate/geotiff", "/generate/bbox", "/health", "/model"} <= set(paths)


def test_missing_checkpoint_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        create_app(ApiSettings(checkpoint=tmp_path / "missing.safetensors", device="cpu"))


def test_unexpected_error_is_json_500_and_server_survives(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from satgen_geo.api import work

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(work, "render", broken)
    response = post_png(client, png(painted(64, 64)))
    assert response.status_code == 500 and "RuntimeError: boom" in json_detail(response)
    monkeypatch.undo()
    assert post_png(client, png(painted(64, 64))).status_code == 200
    assert client.get("/health").json()["queue"]["running"] == 0
