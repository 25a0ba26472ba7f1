"""The web map (``GET /map``): its files over HTTP, then the page in a real browser.

The browser is Debian's Chromium driven by Playwright, against a real server on 127.0.0.1
whose tile source is the bundled extract clipped to :data:`CLIP` (a few chunks to render).
Without Chromium or Playwright the browser tests are skipped, except in CI (``CI`` set),
where they fail.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx
import numpy as np
import pytest
from api_helpers import CLIP, serve
from PIL import Image

from satgen_geo.api import ApiSettings, create_app
from satgen_geo.mask import MaskSource
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.tiles import TileConfig
from tests.conftest import SAMPLE_PBF

VIEWPORT = {"width": 512, "height": 384}
TILE_URL = re.compile(r"/tiles/\d+/\d+/\d+\.png$")
#: JavaScript: the map's tile layer.
IMAGERY = "(() => { let layer; satgenMap.eachLayer((l) => { if (l instanceof L.TileLayer) layer = l; }); return layer; })()"
#: JavaScript: true once the map exists and every tile in view has loaded and faded in.
TILES_SHOWN = (f"window.satgenMap !== undefined && !{IMAGERY}.isLoading() && !!document.querySelector('.leaflet-tile-loaded')"
               " && [...document.querySelectorAll('.leaflet-tile-loaded')].every((tile) => tile.style.opacity === '1')")


def _browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install playwright)"
    if shutil.which("chromium") is None:
        return "chromium is not on PATH (apt-get install chromium)"
    return None


@dataclass
class Visit:
    """A page with what it logged: tile responses, console errors and uncaught exceptions."""

    page: Any
    tiles: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def tile_urls(self) -> set[str]:
        return {response.url for response in self.tiles}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the web map tests need a browser in CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                              args=["--no-sandbox"])  # tests run as root
        yield chromium
        chromium.close()


@pytest.fixture
def visit(browser: Any) -> Iterator[Visit]:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(30_000)
    seen = Visit(page)
    page.on("response", lambda r: seen.tiles.append(r) if TILE_URL.search(r.url) else None)
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    yield seen
    page.close()


@pytest.fixture(scope="module")
def map_url(tiny: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose tile source is the sample extract clipped to ``CLIP``, with a private chunk cache."""
    settings = ApiSettings(device="cpu", backend="torch", precision="fp32", tiles=MaskSource(osm=SAMPLE_PBF, bbox=CLIP),
                           tile_config=TileConfig(chunk_px=512, cache_dir=tmp_path_factory.mktemp("tiles")))
    with serve(create_app(settings, model=tiny)) as url:
        yield url


def _inside_area(visit: Visit, bounds: list[float]) -> np.ndarray:
    """The map's RGB pixels inside ``bounds`` (west, south, east, north), a few pixels in from the outline."""
    box = visit.page.evaluate("""([west, south, east, north]) => {
        const nw = satgenMap.latLngToContainerPoint([north, west]), se = satgenMap.latLngToContainerPoint([south, east]);
        return [nw.x, nw.y, se.x, se.y];
    }""", bounds)
    left, top, right, bottom = (round(v) for v in box)
    shot = Image.open(io.BytesIO(visit.page.locator("#map").screenshot())).convert("RGB")
    return np.asarray(shot)[top + 4:bottom - 4, left + 4:right - 4].astype(float)


def test_page_and_leaflet_are_served_locally(client: httpx.Client) -> None:
    page = client.get("/map")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert not [ref for ref in refs if re.match(r"(https?:)?//", ref)], refs  # nothing from a CDN
    types = {"leaflet.js": "javascript", "leaflet.css": "text/css", "map.js": "javascript", "map.css": "text/css"}
    for ref in refs:
        name = ref.rsplit("/", 1)[-1]
        if name in types:
            asset = client.get(urljoin(str(page.url), ref))
            assert asset.status_code == 200, ref
            assert types.pop(name) in asset.headers["content-type"], ref
    assert not types, f"the page does not reference {sorted(types)}"
    assert client.get("/map/leaflet/images/layers.png").headers["content-type"] == "image/png"


def test_map_shows_pans_and_fades_the_imagery(visit: Visit, map_url: str) -> None:
    page = visit.page
    page.goto(f"{map_url}/map")
    page.wait_for_function(TILES_SHOWN)
    tilejson = httpx.get(f"{map_url}/tiles/tilejson.json").json()
    bounds = tilejson["bounds"]
    view = page.evaluate("""([west, south, east, north]) => {
        const area = L.latLngBounds([south, west], [north, east]);
        return {zoom: satgenMap.getZoom(), fit: satgenMap.getBoundsZoom(area), shown: satgenMap.getBounds().contains(area),
                zooms: [satgenMap.getMinZoom(), satgenMap.getMaxZoom()]};
    }""", bounds)
    assert view["shown"] and view["zoom"] == view["fit"], view  # fitted to the bounds
    assert view["zooms"] == [tilejson["minzoom"], tilejson["maxzoom"]]
    attribution = page.inner_text(".leaflet-control-attribution")
    assert "© OpenStreetMap contributors" in attribution and "synthetic imagery" in attribution

    assert visit.tiles and all(r.status == 200 and r.headers["content-type"] == "image/png" for r in visit.tiles)
    pixels = _inside_area(visit, bounds)
    background = np.array([221, 221, 221])  # Leaflet's map background, #ddd
    assert pixels.std() > 8 and np.abs(pixels - background).mean() > 10, (pixels.mean(), pixels.std())

    page.locator("#opacity").fill("0")
    faded = _inside_area(visit, bounds)
    assert faded.std() < 1 and np.abs(faded - background).max() <= 2, (faded.mean(), faded.std())
    page.locator("#opacity").fill("100")
    assert page.locator(".leaflet-overlay-pane path").count() == 1
    page.locator("#outline").uncheck()
    assert page.locator(".leaflet-overlay-pane path").count() == 0

    page.evaluate("satgenMap.setZoom(satgenMap.getZoom() + 2, {animate: false})")
    page.wait_for_function(TILES_SHOWN)
    before = visit.tile_urls()
    page.evaluate("satgenMap.panBy([200, 150], {animate: false})")
    page.wait_for_function(TILES_SHOWN)
    new = visit.tile_urls() - before
    assert new, "panning requested no new tiles"
    assert all(r.status == 200 for r in visit.tiles)
    assert visit.errors == []


def test_map_without_tile_source_says_why(visit: Visit, base_url: str) -> None:
    page = visit.page
    page.goto(f"{base_url}/map")
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert "no tile source" in message.inner_text() and "--tiles" in message.inner_text()
    assert page.evaluate("window.satgenMap === undefined")
    assert not visit.tiles
    assert [e for e in visit.errors if "404" not in e] == []  # the browser logs the tilejson's 404 itself
