"""The tile endpoints: ``GET /tiles/{z}/{x}/{y}.{png,webp,jpg}`` and ``GET /tiles/tilejson.json``.

A tile whose chunks are cached is read and encoded on a thread at once; a tile with missing
chunks first renders them as a job on the tile queue (bounded: 503 when full, cancelled when
the client disconnects; identical chunk renders coalesce in the cache). A tile beyond the
source's area is an empty (transparent) image, answered without work. The server has a tile
source only when started with one (``ApiSettings.tiles``); otherwise these answer 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from satgen_geo.api.errors import ERROR_RESPONSES, NoTileSourceError
from satgen_geo.tiles import MEDIA_TYPES, TileSource, encode_tile

router = APIRouter(tags=["tiles"])

#: Browsers and QGIS may keep a tile a day: a tile's pixels never change for a running source.
CACHE_CONTROL = "public, max-age=86400"
Format = Literal["png", "webp", "jpg"]


def get_tiles(request: Request) -> TileSource:
    """The app's tile source, or 404 when it has none."""
    tiles: TileSource | None = getattr(request.app.state, "tiles", None)
    if tiles is None:
        raise NoTileSourceError("this server has no tile source; start it with one (satgen serve --tiles SOURCE)",
                                param="tile_source")
    return tiles


TilesDep = Annotated[TileSource, Depends(get_tiles)]


@router.get("/tiles/tilejson.json", summary="TileJSON 3.0.0 of the synthetic basemap")
async def tilejson(request: Request, tiles: TilesDep,
                   fmt: Annotated[Format, Query(alias="format", description="tile image format")] = "png") -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    return tiles.tilejson(f"{base}/tiles/{{z}}/{{x}}/{{y}}.{fmt}")


@router.get("/tiles/{z}/{x}/{y}.{fmt}", summary="One XYZ tile (Web Mercator, 256 px) of synthetic imagery",
            response_class=Response, responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}},
                                                **ERROR_RESPONSES, 404: {"description": "No such tile or no tile source"},
                                                422: {"description": "Below the minimum zoom and not cached"}})
async def tile(request: Request, tiles: TilesDep, z: int, x: int, y: int, fmt: Format) -> Response:
    read = await run_in_threadpool(tiles.tile_read, z, x, y)
    if read is None:
        data = encode_tile(None, fmt)
    else:
        if tiles.missing(read):
            queue = request.app.state.tile_queue
            await queue.run(lambda cancel: tiles.ensure(read, cancel), request.is_disconnected)
        rgba = await run_in_threadpool(tiles.read, read)
        data = await run_in_threadpool(encode_tile, rgba, fmt)
    return Response(data, media_type=MEDIA_TYPES[fmt], headers={"Cache-Control": CACHE_CONTROL})
