"""The synthetic basemap in QGIS: ``satgen serve --tiles`` as an XYZ layer, rendered headless.

What a user does, in QGIS 3.22 or later:

1. start the server: ``satgen serve --tiles sample_aoi/kotka-suburb.osm.pbf`` (port 8000);
2. Browser panel → XYZ Tiles → New Connection: Name "synthetic", URL
   ``http://127.0.0.1:8000/tiles/{z}/{x}/{y}.png``, Min. Zoom Level and Max. Zoom Level the
   ``minzoom`` and ``maxzoom`` of ``http://127.0.0.1:8000/tiles/tilejson.json`` (14 and 19 for
   the sample); then double-click the connection.

That connection is this layer URI (what ``iface.addRasterLayer(uri, "synthetic", "wms")`` takes)::

    type=xyz&url=http://127.0.0.1:8000/tiles/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=14

The test starts the real server (the toolkit CLI, torch fp32, a private cache), adds the layer
from the URI QGIS builds for such a connection, renders the sample area plus a margin at the
zoom 16 resolution with the map canvas's parallel renderer, and checks the image (textured
pixels inside the area, transparent ones outside) and the server's log (QGIS asked for zoom 16
tiles, each answered 200). The first view of an empty cache renders every chunk of the area
(about 15 s here), so QGIS's network timeout is raised for the test on a busy machine.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from conftest import LAYERS, REPO
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDataSourceUri,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsNetworkAccessManager,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage

SAMPLE_BOUNDS = (26.93, 60.52, 26.97, 60.54)
HALF_WORLD_M = math.pi * 6378137.0  # Web Mercator's x and y run from -HALF_WORLD_M to HALF_WORLD_M
#: Web Mercator map units per pixel at zoom 16 (256 px tiles): QGIS picks the zoom nearest the view's.
Z16_RES = 2 * HALF_WORLD_M / 256 / 2**16
MARGIN = 0.15  # of the area's size, added on each side of the view
START_S, NETWORK_TIMEOUT_MS = 60, 180_000
ACCESS_LINE = re.compile(r'"GET /tiles/(\d+)/(\d+)/(\d+)\.png HTTP/1\.1" (\d+)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(toolkit_cli, sample_osm, tmp_path):
    """The toolkit's tile server on a free port: yields ``(base URL, its log file)``."""
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {**os.environ, "SATGEN_CACHE_DIR": str(tmp_path / "cache")}
    command = [toolkit_cli, "serve", "--tiles", sample_osm, "--port", str(port), "--backend", "torch",
               "--precision", "fp32", "--tile-cache-dir", str(tmp_path / "tiles")]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert process.poll() is None, f"the server exited: {log_path.read_text()}"
            try:
                urllib.request.urlopen(f"{base}/tiles/tilejson.json", timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"no answer in {START_S} s: {log_path.read_text()}"
                time.sleep(0.3)
        yield base, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def xyz_uri(tiles_url: str, zmin: int, zmax: int) -> str:
    """The layer URI of a QGIS XYZ connection (as the Browser's connection builds it)."""
    uri = QgsDataSourceUri()
    uri.setParam("type", "xyz")
    uri.setParam("url", tiles_url)
    uri.setParam("zmax", str(zmax))
    uri.setParam("zmin", str(zmin))
    return bytes(uri.encodedUri()).decode()


def tiles_under(extent: QgsRectangle, zoom: int) -> list[tuple[int, int]]:
    """The ``(x, y)`` of the XYZ tiles of ``zoom`` that an EPSG:3857 extent touches."""
    tile_m = 2 * HALF_WORLD_M / 2**zoom

    def span(low: float, high: float) -> range:  # metres from the world's left (top) edge
        return range(math.floor(low / tile_m), math.ceil(high / tile_m))

    xs = span(extent.xMinimum() + HALF_WORLD_M, extent.xMaximum() + HALF_WORLD_M)
    ys = span(HALF_WORLD_M - extent.yMaximum(), HALF_WORLD_M - extent.yMinimum())
    return [(x, y) for x in xs for y in ys]


def rgba(image: QImage) -> np.ndarray:
    """``(rows, cols, 4)`` uint8 RGBA of a QImage."""
    image = image.convertToFormat(QImage.Format_RGBA8888)
    bits = image.constBits()
    bits.setsize(image.sizeInBytes())
    rows = np.frombuffer(bits, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, :image.width() * 4].reshape(image.height(), image.width(), 4).copy()


def test_tile_server_is_a_qgis_xyz_basemap(server):
    base, log_path = server
    tilejson = json.loads(urllib.request.urlopen(f"{base}/tiles/tilejson.json", timeout=10).read())
    assert (tilejson["minzoom"], tilejson["maxzoom"]) == (14, 19)
    assert np.allclose(tilejson["bounds"], SAMPLE_BOUNDS, atol=1e-6)

    uri = xyz_uri(f"{base}/tiles/{{z}}/{{x}}/{{y}}.png", tilejson["minzoom"], tilejson["maxzoom"])
    assert uri == f"type=xyz&url={base}/tiles/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=14"
    layer = QgsRasterLayer(uri, "synthetic", "wms")
    LAYERS.append(layer)
    assert layer.isValid(), layer.error().summary()
    assert layer.crs().authid() == "EPSG:3857"

    to_mercator = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), layer.crs(), QgsProject.instance())
    area = to_mercator.transformBoundingBox(QgsRectangle(*tilejson["bounds"]))
    view = area.buffered(MARGIN * max(area.width(), area.height()))
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setOutputSize(QSize(round(view.width() / Z16_RES), round(view.height() / Z16_RES)))
    settings.setExtent(view)
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererParallelJob(settings)
    timeout = QgsNetworkAccessManager.timeout()
    QgsNetworkAccessManager.setTimeout(NETWORK_TIMEOUT_MS)
    try:
        job.start()
        job.waitForFinished()
    finally:
        QgsNetworkAccessManager.setTimeout(timeout)
    assert not job.errors(), [error.message for error in job.errors()]
    pixels = rgba(job.renderedImage())

    to_pixel = settings.mapToPixel()
    top_left = to_pixel.transform(QgsPointXY(area.xMinimum(), area.yMaximum()))
    bottom_right = to_pixel.transform(QgsPointXY(area.xMaximum(), area.yMinimum()))
    c0, r0, c1, r1 = (round(v) for v in (top_left.x(), top_left.y(), bottom_right.x(), bottom_right.y()))
    assert 0 < c0 < c1 < pixels.shape[1] and 0 < r0 < r1 < pixels.shape[0]
    edge = 3  # px: the area's outline is in UTM on the server and resampled twice
    inside = pixels[r0 + edge:r1 - edge, c0 + edge:c1 - edge]
    assert (inside[..., 3] == 255).mean() > 0.999
    rgb = inside[..., :3].reshape(-1, 3)
    assert rgb.std(axis=0).min() > 10, rgb.std(axis=0)
    assert len(np.unique(rgb[::7], axis=0)) > 5000
    outside = np.ones(pixels.shape[:2], bool)
    outside[r0 - edge:r1 + edge, c0 - edge:c1 + edge] = False
    assert pixels[outside].max() == 0  # transparent: every channel 0

    requests = [tuple(map(int, match.groups())) for match in ACCESS_LINE.finditer(log_path.read_text())]
    assert {z for z, *_ in requests} == {16}, requests
    assert {status for *_, status in requests} == {200}
    assert sorted((x, y) for _, x, y, _ in requests) == tiles_under(settings.visibleExtent(), 16)
