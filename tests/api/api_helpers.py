"""Helpers for the HTTP API tests: a real uvicorn server on 127.0.0.1, raw sockets, test images."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import numpy as np
import rasterio
import uvicorn
from PIL import Image, ImageDraw
from rasterio.transform import from_origin

CLIP = (26.945, 60.525, 26.955, 60.530)
MAX_UPLOAD = 50_000
MAX_PIXELS = 512 * 512
#: The roomy server: 2048² images, at most 1000 windows a job, one job slot.
ROOMY_PIXELS, ROOMY_WINDOWS = 2048 * 2048, 1000
EDITOR_ORIGIN = "http://localhost:5173"
ORIGIN_32635 = from_origin(500_000.0, 6_710_000.0, 1.0, 1.0)


def closed_port_url() -> str:
    """An Overpass URL on a port nobody listens on: offline, fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


@contextmanager
def serve(app: object) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread on a free port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 20, "uvicorn did not start")
    if not thread.is_alive():
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    """Poll ``condition`` until it is true; AssertionError with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(poll)


# --------------------------------------------------------------------------- raw HTTP over a socket


def multipart_file(data: bytes, filename: str = "mask.png", content_type: str = "image/png") -> tuple[bytes, str]:
    """A multipart body with one ``file`` field, and its Content-Type."""
    boundary = "satgen-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def raw_request(base_url: str, target: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """An HTTP/1.1 POST as bytes; ``Content-Length`` defaults to ``len(body)``."""
    lines = [f"POST {target} HTTP/1.1", f"Host: {urlsplit(base_url).netloc}"]
    lines += [f"{name}: {value}" for name, value in {"Content-Length": str(len(body)), **headers}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def connect(base_url: str) -> socket.socket:
    """A TCP connection to the server at ``base_url``."""
    parts = urlsplit(base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP response with Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


# --------------------------------------------------------------------------- images


def painted(width: int = 300, height: int = 200) -> Image.Image:
    """An editor-style RGBA painting: a wide antialiased red road, green buildings, transparent rest."""
    scale = 4  # draw large and downsample: antialiased edges like a browser brush
    big = Image.new("RGBA", (width * scale, height * scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    draw.line([(0, 100 * scale), (width * scale, 60 * scale)], fill=(255, 0, 0, 255), width=8 * scale)
    draw.line([(150 * scale, 0), (170 * scale, height * scale)], fill=(255, 0, 0, 255), width=8 * scale)
    for x, y in ((30, 20), (200, 120), (60, 140), (230, 10)):
        draw.rectangle([x * scale, y * scale, (x + 30) * scale, (y + 22) * scale], fill=(0, 255, 0, 255))
    return big.resize((width, height), Image.LANCZOS)


def big_painting(size: int) -> bytes:
    """A ``size``² PNG painting (roads and a building, drawn directly: cheap at any size)."""
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    draw.line([(0, size // 3), (size, size // 2)], fill=(255, 0, 0), width=12)
    draw.rectangle([size // 4, size // 4, size // 4 + 40, size // 4 + 30], fill=(0, 255, 0))
    return png(image)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` × ``height`` pixels in a few hundred bytes (its data is short)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def geotiff(data: np.ndarray, crs: str | None = "EPSG:32635", transform: object = ORIGIN_32635) -> bytes:
    count, height, width = data.shape
    with rasterio.MemoryFile() as memfile:
        with memfile.open(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
                          crs=crs, transform=transform, compress="deflate") as dst:
            dst.write(data)
        return memfile.read()


def mask_array(height: int = 260, width: int = 300) -> np.ndarray:
    data = np.zeros((2, height, width), dtype=np.uint8)
    data[0, 120:132, :] = 255
    data[0, :, 40:50] = 255
    data[1, 20:50, 100:140] = 255
    return data


def post_png(client: httpx.Client, data: bytes, **params: object) -> httpx.Response:
    return client.post("/generate", files={"file": ("mask.png", data, "image/png")}, params=params)


def json_detail(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)
