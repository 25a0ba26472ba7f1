"""The HTTP API against a real uvicorn server on 127.0.0.1, talking HTTP with httpx.

The model is a tiny ``UNetGenerator(features=8)`` saved as safetensors and loaded with
``load_model``, exactly as ``satgen serve --checkpoint`` would. Overpass is either a closed
port (offline) or a fake server on 127.0.0.1 answering a recorded response; no real
network is used.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image, ImageDraw
from rasterio.transform import from_origin

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
import uvicorn  # noqa: E402

from satgen_geo.api import ApiSettings, classify_painted, create_app  # noqa: E402
from satgen_geo.errors import CheckpointError  # noqa: E402
from satgen_geo.model import ModelSpec, UNetGenerator, save_generator  # noqa: E402
from satgen_geo.model.loaded import LoadedModel, load_model  # noqa: E402
from satgen_geo.osm.fetch import OverpassConfig  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "overpass_kotka_clip.json"
CLIP = (26.945, 60.525, 26.955, 60.530)
MAX_UPLOAD = 50_000
MAX_PIXELS = 512 * 512
EDITOR_ORIGIN = "http://localhost:5173"
ORIGIN_32635 = from_origin(500_000.0, 6_710_000.0, 1.0, 1.0)


# --------------------------------------------------------------------------- helpers


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


@contextmanager
def _serve(app: object) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yield its base URL."""
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


class _FakeOverpass:
    """Answers every /api/interpreter request with the recorded Kotka response."""

    def __init__(self) -> None:
        body = FIXTURE.read_bytes()
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _painted(width: int = 300, height: int = 200) -> Image.Image:
    """An editor-style RGBA painting: a wide antialiased red road, green buildings, transparent rest."""
    scale = 4  # draw large and downsample: antialiased edges like a browser brush
    big = Image.new("RGBA", (width * scale, height * scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    draw.line([(0, 100 * scale), (width * scale, 60 * scale)], fill=(255, 0, 0, 255), width=8 * scale)
    draw.line([(150 * scale, 0), (170 * scale, height * scale)], fill=(255, 0, 0, 255), width=8 * scale)
    for x, y in ((30, 20), (200, 120), (60, 140), (230, 10)):
        draw.rectangle([x * scale, y * scale, (x + 30) * scale, (y + 22) * scale], fill=(0, 255, 0, 255))
    return big.resize((width, height), Image.LANCZOS)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _geotiff(data: np.ndarray, crs: str | None = "EPSG:32635", transform=ORIGIN_32635) -> bytes:
    count, height, width = data.shape
    with rasterio.MemoryFile() as memfile:
        with memfile.open(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
                          crs=crs, transform=transform, compress="deflate") as dst:
            dst.write(data)
        return memfile.read()


def _mask_array(height: int = 260, width: int = 300) -> np.ndarray:
    data = np.zeros((2, height, width), dtype=np.uint8)
    data[0, 120:132, :] = 255
    data[0, :, 40:50] = 255
    data[1, 20:50, 100:140] = 255
    return data


def _post_png(client: httpx.Client, data: bytes, **params: object) -> httpx.Response:
    return client.post("/generate", files={"file": ("mask.png", data, "image/png")}, params=params)


def _json_detail(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: modest CPU use on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = UNetGenerator(features=8)
    path = save_generator(model, ModelSpec(features=8, name="tiny"), tmp_path_factory.mktemp("api") / "tiny.safetensors")
    return load_model(path, "cpu")


@pytest.fixture(scope="module")
def base_url(tiny: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    overpass = OverpassConfig(url=_closed_port_url(), cache_dir=tmp_path_factory.mktemp("cache"), use_cache=False,
                              timeout_s=5.0, max_retries=0)
    settings = ApiSettings(device="cpu", max_upload_bytes=MAX_UPLOAD, max_output_pixels=MAX_PIXELS,
                           queue_size=2, workers=1, overpass=overpass)
    with _serve(create_app(settings, model=tiny)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


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
    painting = _painted()
    response = _post_png(client, _png(painting), deterministic="true")
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
    data = _png(_painted())
    first = _post_png(client, data, seed=7)
    second = client.post("/generate", files={"file": ("mask.png", data, "image/png")}, data={"seed": "7"})
    other = _post_png(client, data, seed=8)
    assert first.status_code == second.status_code == other.status_code == 200
    assert first.content == second.content  # a form field works like the query parameter
    assert not np.array_equal(np.asarray(Image.open(io.BytesIO(first.content))),
                              np.asarray(Image.open(io.BytesIO(other.content))))


def test_jpeg_and_palette_inputs(client: httpx.Client) -> None:
    buffer = io.BytesIO()
    _painted(256, 128).convert("RGB").save(buffer, format="JPEG", quality=80)
    jpeg = client.post("/generate", files={"file": ("m.jpg", buffer.getvalue(), "image/jpeg")})
    palette = _post_png(client, _png(_painted(100, 90).convert("RGB").convert("P", palette=Image.ADAPTIVE)))
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
    response = client.post("/generate/geotiff", files={"file": ("mask.tif", _geotiff(_mask_array()), "image/tiff")},
                           params={"seed": 3})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/tiff"
    with rasterio.MemoryFile(response.content) as memfile, memfile.open() as src:
        assert src.crs.to_epsg() == 32635
        assert src.transform == ORIGIN_32635
        assert (src.count, src.height, src.width) == (3, 260, 300)
        assert src.dtypes[0] == "uint8"


def test_geotiff_errors_are_4xx_json(client: httpx.Client) -> None:
    three = client.post("/generate/geotiff", files={"file": ("m.tif", _geotiff(np.zeros((3, 64, 64), np.uint8)), "image/tiff")})
    assert three.status_code == 422
    detail = _json_detail(three)
    assert "3 band(s)" in detail and "2 uint8 bands" in detail
    assert "/tmp" not in detail and "satgen-api-" not in detail  # no server paths leak
    no_crs = client.post("/generate/geotiff", files={"file": ("m.tif", _geotiff(_mask_array(64, 64), crs=None), "image/tiff")})
    assert no_crs.status_code == 422 and "CRS" in _json_detail(no_crs)
    png = client.post("/generate/geotiff", files={"file": ("m.png", _png(_painted()), "image/png")})
    assert png.status_code == 415 and "TIFF" in _json_detail(png)
    big = client.post("/generate/geotiff", files={"file": ("m.tif", _geotiff(np.zeros((2, 600, 600), np.uint8)), "image/tiff")})
    assert big.status_code == 413 and "pixels" in _json_detail(big)


# --------------------------------------------------------------------------- limits and bad input


def test_upload_and_pixel_limits(client: httpx.Client) -> None:
    rng = np.random.default_rng(0)
    just_over = client.post("/generate", files={"file": ("m.png", rng.bytes(MAX_UPLOAD + 1000), "image/png")})
    assert just_over.status_code == 413 and "limit" in _json_detail(just_over)
    way_over = client.post("/generate", files={"file": ("m.png", rng.bytes(400_000), "image/png")})
    assert way_over.status_code == 413  # refused from Content-Length, unread
    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="m.png"\r\n\r\n'
        for _ in range(20):
            yield rng.bytes(10_000)
        yield b"\r\n--b0undary--\r\n"

    streamed = client.post("/generate", content=chunked(), headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert streamed.status_code == 413 and "limit" in _json_detail(streamed)
    pixels = _post_png(client, _png(Image.new("RGB", (600, 600))))
    assert pixels.status_code == 413 and "600×600" in _json_detail(pixels)


def test_garbage_and_missing_file(client: httpx.Client) -> None:
    garbage = client.post("/generate", files={"file": ("m.png", b"\x00garbage" * 100, "image/png")})
    assert garbage.status_code == 415 and "PNG" in _json_detail(garbage)
    truncated = _post_png(client, _png(_painted())[:400])
    assert 400 <= truncated.status_code < 500
    assert client.post("/generate").status_code == 422
    bad_overlap = _post_png(client, _png(_painted(64, 64)), overlap=999)
    assert bad_overlap.status_code == 400 and "overlap" in _json_detail(bad_overlap)


# --------------------------------------------------------------------------- bbox


def test_bbox_offline_is_503_fast(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.post("/generate/bbox", json={"bbox": [26.945, 60.525, 26.947, 60.526], "deterministic": True})
    assert time.monotonic() - started < 10
    assert response.status_code == 503
    detail = _json_detail(response)
    assert "Overpass" in detail and "--osm" in detail


def test_bbox_validation(client: httpx.Client) -> None:
    swapped = client.post("/generate/bbox", json={"bbox": [26.955, 60.525, 26.945, 60.530]})
    assert swapped.status_code == 422 and "swapped" in _json_detail(swapped)
    three = client.post("/generate/bbox", json={"bbox": [1, 2, 3]})
    assert three.status_code == 422
    huge = client.post("/generate/bbox", json={"bbox": [26.0, 60.0, 27.0, 61.0]})
    assert huge.status_code == 413 and "pixels" in _json_detail(huge)


def test_bbox_with_fake_overpass(tiny: LoadedModel, tmp_path: Path) -> None:
    fake = _FakeOverpass()
    try:
        overpass = OverpassConfig(url=fake.url, cache_dir=tmp_path, use_cache=False, timeout_s=5.0, max_retries=0)
        app = create_app(ApiSettings(overpass=overpass, gsd_m=4.0), model=tiny)
        with _serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            response = client.post("/generate/bbox", json={"bbox": list(CLIP), "deterministic": True})
    finally:
        fake.close()
    assert response.status_code == 200, response.text
    assert fake.requests >= 1
    with rasterio.MemoryFile(response.content) as memfile, memfile.open() as src:
        assert src.crs.to_epsg() == 32635  # the area's UTM zone
        assert src.transform.a == 4.0 and src.count == 3
        assert 100 < src.width < 200 and 100 < src.height < 200


# --------------------------------------------------------------------------- queue, health, startup


def test_concurrent_requests_get_200_or_503(client: httpx.Client, base_url: str) -> None:
    data = _png(_painted(512, 512))
    n = 8
    barrier = threading.Barrier(n)

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=120) as c:
            barrier.wait()
            return _post_png(c, data, seed=1)

    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(post, range(n)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 503}, codes
    assert 200 in codes and 503 in codes, codes
    for r in responses:
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1
            assert "busy" in _json_detail(r)
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["model_loaded"] is True and body["device"] == "cpu"
    assert body["queue"] == {"running": 0, "waiting": 0, "capacity": 2}


def test_model_and_docs(client: httpx.Client, tiny: LoadedModel) -> None:
    info = client.get("/model").json()
    assert info["name"] == "tiny" and info["features"] == 8 and info["tile_px"] == 256
    assert info["sha256"] == tiny.sha256 and info["parameter_count"] > 0
    assert "/" not in info["source"]  # the file name only, not the server's path
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/generate", "/generate/geotiff", "/generate/bbox", "/health", "/model"} <= set(paths)


def test_missing_checkpoint_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        create_app(ApiSettings(checkpoint=tmp_path / "missing.safetensors", device="cpu"))


def test_unexpected_error_is_json_500_and_server_survives(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import satgen_geo.api as api

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "render", broken)
    response = _post_png(client, _png(_painted(64, 64)))
    assert response.status_code == 500 and "RuntimeError: boom" in _json_detail(response)
    monkeypatch.undo()
    assert _post_png(client, _png(_painted(64, 64))).status_code == 200
    assert client.get("/health").json()["queue"]["running"] == 0
