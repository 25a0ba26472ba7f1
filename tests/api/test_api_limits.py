"""Every request is bounded before work: body, upload, pixels, overlap, windows, and foreign origins."""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Iterator

import httpx
import numpy as np
from api_helpers import (
    EDITOR_ORIGIN,
    MAX_PIXELS,
    MAX_UPLOAD,
    ROOMY_WINDOWS,
    big_painting,
    connect,
    json_detail,
    multipart_file,
    painted,
    png,
    png_header,
    post_png,
    raw_request,
    read_response,
    serve,
)
from PIL import Image

from satgen_geo.api import ApiSettings, create_app
from satgen_geo.api.painted import probe_image
from satgen_geo.engine import max_overlap
from satgen_geo.model.loaded import LoadedModel

# --------------------------------------------------------------------------- upload and pixels


def test_upload_and_pixel_limits(client: httpx.Client) -> None:
    rng = np.random.default_rng(0)
    just_over = client.post("/generate", files={"file": ("m.png", rng.bytes(MAX_UPLOAD + 1000), "image/png")})
    assert just_over.status_code == 413 and "limit" in json_detail(just_over)
    way_over = client.post("/generate", files={"file": ("m.png", rng.bytes(400_000), "image/png")})
    assert way_over.status_code == 413  # refused from Content-Length, unread
    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="m.png"\r\n\r\n'
        for _ in range(20):
            yield rng.bytes(10_000)
        yield b"\r\n--b0undary--\r\n"

    streamed = client.post("/generate", content=chunked(), headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert streamed.status_code == 413 and "limit" in json_detail(streamed)
    pixels = post_png(client, png(Image.new("RGB", (600, 600))))
    assert pixels.status_code == 413 and "600×600" in json_detail(pixels)
    assert {just_over.json()["param"], way_over.json()["param"], streamed.json()["param"]} == {"upload"}
    assert pixels.json()["param"] == "max_pixels"


def test_garbage_and_missing_file(client: httpx.Client) -> None:
    garbage = client.post("/generate", files={"file": ("m.png", b"\x00garbage" * 100, "image/png")})
    assert garbage.status_code == 415 and "PNG" in json_detail(garbage)
    truncated = post_png(client, png(painted())[:400])
    assert 400 <= truncated.status_code < 500
    assert client.post("/generate").status_code == 422
    bad_overlap = post_png(client, png(painted(64, 64)), overlap=999)
    assert bad_overlap.status_code == 400 and "overlap" in json_detail(bad_overlap)
    assert bad_overlap.json()["param"] == "overlap_px"
    assert "--" not in json_detail(bad_overlap)  # concepts, not CLI flags


def test_huge_png_header_quotes_the_servers_pixel_limit(client: httpx.Client) -> None:
    response = post_png(client, png_header(20000, 20000))
    assert response.status_code == 413
    detail = json_detail(response)
    assert "20000×20000" in detail and f"{MAX_PIXELS:,}" in detail
    assert "178956970" not in detail and "178,956,970" not in detail  # not Pillow's internal limit
    assert response.json()["param"] == "max_pixels"


def test_pillow_limit_is_left_alone(tiny: LoadedModel) -> None:
    before = Image.MAX_IMAGE_PIXELS
    create_app(ApiSettings(max_output_pixels=400_000_000), model=tiny)
    assert Image.MAX_IMAGE_PIXELS == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        assert probe_image(png_header(15000, 15000)) == (15000, 15000)  # 225 Mpx: over Pillow's 2 × 89 Mpx


# --------------------------------------------------------------------------- overlap and window count


def test_overlap_range_and_window_limit(roomy: httpx.Client) -> None:
    assert max_overlap(256) == 224
    jobs = roomy.get("/health").json()["jobs"]
    data = big_painting(1024)
    started = time.monotonic()
    too_much = post_png(roomy, data, overlap=255)  # 591,361 windows at 255: refused before any work
    refused_s = time.monotonic() - started
    assert too_much.status_code == 400 and "overlap" in json_detail(too_much), too_much.text
    assert "224" in json_detail(too_much) and too_much.json()["param"] == "overlap_px"
    assert refused_s < 0.5, refused_s
    started = time.monotonic()
    over = post_png(roomy, big_painting(2048), overlap=224)  # 57 × 57 = 3,249 windows
    assert over.status_code == 413, over.text
    assert time.monotonic() - started < 1.0
    detail = json_detail(over)
    assert "3,249 windows" in detail and f"{ROOMY_WINDOWS:,}" in detail and over.json()["param"] == "max_windows"
    assert "--" not in detail
    assert roomy.get("/health").json()["jobs"] == jobs  # both refused before any job ran
    normal = post_png(roomy, data, overlap=224, deterministic="true")  # 25 × 25 = 625 windows: allowed
    assert normal.status_code == 200, normal.text
    assert Image.open(io.BytesIO(normal.content)).size == (1024, 1024)


# --------------------------------------------------------------------------- Origin


def test_foreign_origin_is_refused_before_the_body(client: httpx.Client, base_url: str) -> None:
    jobs = client.get("/health").json()["jobs"]
    body, content_type = multipart_file(png(painted(64, 64)))
    headers = {"Origin": "http://evil.example", "Content-Type": content_type, "Content-Length": "1000000"}
    with connect(base_url) as sock:
        sock.sendall(raw_request(base_url, "/generate", headers))  # headers only: the body never comes
        sock.settimeout(5)
        status, response_headers, raw = read_response(sock)
    assert status == 403, raw
    assert b"evil.example" in raw and b'"param":"cors_origins"' in raw
    assert "access-control-allow-origin" not in response_headers
    evil = client.post("/generate", files={"file": ("m.png", body, "image/png")}, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.json()["param"] == "cors_origins"
    assert client.get("/health").json()["jobs"] == jobs  # no job ran


def test_allowed_own_and_missing_origins_work(client: httpx.Client, base_url: str) -> None:
    data = png(painted(64, 64))
    with httpx.Client(base_url=base_url, headers={"Origin": EDITOR_ORIGIN}, timeout=60) as from_editor:
        editor = post_png(from_editor, data)
    assert editor.status_code == 200 and editor.headers["access-control-allow-origin"] == EDITOR_ORIGIN
    own = client.post("/generate", files={"file": ("m.png", data, "image/png")}, headers={"Origin": base_url})
    assert own.status_code == 200  # the server's own /docs page
    body, content_type = multipart_file(data)
    with connect(base_url) as sock:  # curl-like: no Origin at all
        sock.sendall(raw_request(base_url, "/generate", {"Content-Type": content_type}, body))
        status, headers, _ = read_response(sock)
    assert status == 200 and headers["content-type"] == "image/png"


def test_wildcard_origin_allows_every_page(tiny: LoadedModel) -> None:
    app = create_app(ApiSettings(cors_origins=("*",)), model=tiny)
    with serve(app) as url, httpx.Client(base_url=url, headers={"Origin": "http://anywhere.example"}, timeout=60) as client:
        response = post_png(client, png(painted(64, 64)))
    assert response.status_code == 200
