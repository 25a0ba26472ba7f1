"""The web map: ``GET /map``, a Leaflet page of the tile source's synthetic imagery.

The page (``static/map.html``, ``map.js``, ``map.css``, served at ``/map/static/``) reads
``/tiles/tilejson.json`` and shows the tiles fitted to the source's bounds, between its
minimum and maximum zoom, with their attribution, an opacity slider and the data area's
outline; without a tile source it shows the server's message. Leaflet comes from the
``xstatic-leaflet`` package, served at ``/map/leaflet/``: the page loads nothing from
another site, so it works offline and passes the origin check
(:mod:`~satgen_geo.api.origin`) as the server's own page.
"""

from __future__ import annotations

from pathlib import Path

import xstatic.pkg.leaflet as leaflet
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")

router = APIRouter(tags=["map"])


@router.get("/map", summary="A web map of the synthetic imagery (Leaflet)", response_class=FileResponse)
async def map_page() -> FileResponse:
    return FileResponse(STATIC / "map.html", media_type="text/html")


def add_map(app: FastAPI) -> None:
    """Serve the map page, its files and Leaflet's on ``app``."""
    app.include_router(router)
    app.mount("/map/static", StaticFiles(directory=STATIC), name="map-static")
    app.mount("/map/leaflet", StaticFiles(directory=leaflet.BASE_DIR), name="leaflet")
