"""The synthetic basemap on the command line: ``satgen tiles`` and the tile source options it shares with ``satgen serve --tiles``.

A tile source is an OSM file (``.osm``/``.osm.pbf``), a vector file, an OSM store from
``satgen osm extract``, or the word ``overpass`` (Overpass with its cache; needs ``--bbox``).
``satgen tiles`` is registered on the main group by :mod:`satgen_geo.cli`; it calls
:func:`satgen_geo.tiles.export.export_tiles` and lets the group map its errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from satgen_geo.cli import _bbox, _engine_options, _overpass, _progress_option, _render_inputs, _run
from satgen_geo.cli_report import SatgenCommand

#: The tile source that downloads from Overpass instead of reading a file.
OVERPASS = "overpass"


def tile_options(func: Callable) -> Callable:
    """The options that shape a tile source (area, zooms, cache), shared by ``serve`` and ``tiles``."""
    options = [
        click.option("--bbox", callback=_bbox, metavar="W,S,E,N", help="Area in EPSG:4326 degrees (default: the source file's extent; needed for overpass)."),
        click.option("--min-zoom", type=int, default=None, help="Lowest zoom rendered on demand [native zoom - 3]."),
        click.option("--max-zoom", type=int, default=None, help="Highest zoom served [native zoom + 2]."),
        click.option("--tile-cache-mb", type=int, default=2048, show_default=True, help="Chunk cache size (all sources together)."),
        click.option("--tile-cache-dir", type=click.Path(file_okay=False), default=None, help="Chunk cache folder [<satgen cache>/tiles]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def tile_inputs(tile_source: str, bbox: tuple[float, ...] | None, overpass_url: str | None, min_zoom: int | None,
                max_zoom: int | None, tile_cache_mb: int, tile_cache_dir: str | None) -> tuple[Any, Any]:
    """``(MaskSource, TileConfig)`` from the tile source argument and :func:`tile_options`."""
    from satgen_geo.mask import MaskSource
    from satgen_geo.tiles import TileConfig

    if tile_source == OVERPASS:
        if bbox is None:
            raise click.UsageError("an Overpass tile source needs its area: add --bbox W,S,E,N")
        source = MaskSource(bbox=bbox, overpass=_overpass(overpass_url))
    else:
        source = MaskSource(bbox=bbox, osm=tile_source)
    config = TileConfig(min_zoom=min_zoom, max_zoom=max_zoom, cache_mb=tile_cache_mb, cache_dir=tile_cache_dir)
    return source, config


def _zoom_range(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        low, _, high = value.partition("-")
        return int(low), int(high or low)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a zoom or a zoom range; use e.g. --zoom 15-18 or --zoom 17") from None


@click.command(cls=SatgenCommand)
@click.argument("tile_source", metavar="SOURCE")
@click.option("--zoom", callback=_zoom_range, metavar="LOW-HIGH", help="Zooms to export, e.g. 15-18 or 17 [the source's minimum zoom to its native zoom].")
@click.option("--format", "fmt", type=click.Choice(["png", "webp", "jpg"]), default="png", show_default=True, help="Tile image format; jpg has no transparency (outside the area is black).")
@click.option("--max-tiles", type=int, default=None, help="Most tiles the zooms may cover; larger exports stop before any work [1000000].")
@click.option("--overpass-url", default=None, help="Overpass API base URL (for the source 'overpass').")
@tile_options
@_engine_options
@_progress_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="MBTiles (.mbtiles) or PMTiles (.pmtiles) file to write; rerun the same command to finish an interrupted export.")
def tiles(tile_source: str, zoom: tuple[int, int] | None, fmt: str, max_tiles: int | None, overpass_url: str | None,
          bbox: tuple[float, ...] | None, min_zoom: int | None, max_zoom: int | None, tile_cache_mb: int,
          tile_cache_dir: str | None, output: str, **kw: Any) -> None:
    """Export a synthetic basemap of SOURCE (as 'satgen serve --tiles' serves it) to an MBTiles or PMTiles file."""
    from satgen_geo.cli import _done  # defined after 'satgen serve', which imports this module
    from satgen_geo.tiles import TileSource
    from satgen_geo.tiles.export import MAX_TILES, export_tiles

    source, config = tile_inputs(tile_source, bbox, overpass_url, min_zoom, max_zoom, tile_cache_mb, tile_cache_dir)
    model, render_config = _render_inputs(kw)

    def job(progress: Any) -> Any:
        basemap = TileSource(source, model, config, render_config)
        zooms = zoom or (basemap.min_zoom, basemap.native_zoom)
        return export_tiles(basemap, output, zooms, fmt, progress, max_tiles=MAX_TILES if max_tiles is None else max_tiles)

    result = _run(job, kw["progress_mode"])
    low, high = result.zooms
    resumed = f", {result.resumed:,} staged by an interrupted run" if result.resumed else ""
    _done(f"wrote {result.path} ({result.tiles:,} tiles at zooms {low}-{high}, {result.file_bytes / 1e6:.1f} MB; "
          f"{result.tiles - result.resumed:,} tiles and {result.chunks} chunks rendered in {result.seconds:.1f} s{resumed})",
          kw["progress_mode"])
