"""The region-scale commands of the ``satgen`` command line: ``satgen osm extract`` and ``satgen region``.

Registered on the main group by :mod:`satgen_geo.cli`; each command parses, calls one core
function (:func:`satgen_geo.osm.extract.extract_store`, :func:`satgen_geo.region.run_region`)
and lets the group map its errors.
"""

from __future__ import annotations

from typing import Any

import click

from satgen_geo.cli import (
    _bbox,
    _done,
    _mask_inputs,
    _progress_option,
    _render_inputs,
    _render_options,
    _run,
    _source_options,
)
from satgen_geo.cli_report import SatgenCommand, SatgenGroup


@click.group(cls=SatgenGroup)
def osm() -> None:
    """OpenStreetMap data: convert a regional extract into the store 'satgen region' reads."""


@osm.command("extract")
@click.argument("osm_file", metavar="REGION.osm.pbf", type=click.Path(dir_okay=False))
@click.option("--bbox", callback=_bbox, metavar="W,S,E,N", help="Keep only features intersecting this EPSG:4326 box.")
@click.option("--aoi", metavar="FILE", type=click.Path(dir_okay=False), help="Keep only features intersecting these polygons (any CRS).")
@click.option("--node-index", type=click.Choice(["auto", "memory", "file"]), default="auto", show_default=True,
              help="Node locations in RAM, or in a temporary file beside the output so RAM stays flat (auto: file above 64 MB).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Store (GeoPackage) to write.")
@_progress_option
def osm_extract(osm_file: str, output: str, bbox: tuple[float, ...] | None, aoi: str | None, node_index: str,
                progress_mode: str) -> None:
    """Stream a regional OSM extract (.osm.pbf, any size) into a spatially indexed store of roads and buildings."""
    def job(progress: Any) -> Any:
        from satgen_geo.osm.extract import ExtractConfig, extract_store

        return extract_store(osm_file, output, bbox, aoi, ExtractConfig(node_index=node_index), progress)

    result = _run(job, progress_mode)
    _done(f"wrote {result.path} ({result.n_roads} roads, {result.n_buildings} buildings from "
          f"{result.input_bytes / 1e6:.1f} MB in {result.seconds:.1f} s, {result.node_index} node index)", progress_mode)


@click.command(cls=SatgenCommand)
@_source_options
@_render_options
@click.option("--store", metavar="FILE", type=click.Path(dir_okay=False), help="OSM store from 'satgen osm extract' (read per chunk by bbox).")
@click.option("--chunk-px", type=int, default=4096, show_default=True,
              help="Chunk side in pixels, 256-65536 (rounded down to a multiple of the window stride).")
@click.option("--workers", "cluster_workers", type=int, default=2, show_default=True,
              help="Local Dask worker processes, one thread each; 0 runs the chunks in this process.")
@click.option("--scheduler", metavar="tcp://HOST:PORT", help="Use this running Dask scheduler (its workers) instead of local workers.")
@click.option("--gpu-per-chunk", is_flag=True, help="Each chunk needs the worker resource GPU=1 (start workers with --resources GPU=1).")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Output folder: chunks/, manifest.json, mosaic.vrt (and mosaic.tif with --cog).")
def region(outdir: str, store: str | None, chunk_px: int, cluster_workers: int, scheduler: str | None,
           gpu_per_chunk: bool, **kw: Any) -> None:
    """Render a city or county as chunks on Dask, identical to one process; reruns resume and update."""
    from dataclasses import replace

    from satgen_geo.region import RegionConfig, run_region

    if store and (kw["osm"] or kw["roads"] or kw["buildings"]):
        raise click.UsageError("give --store or --osm/--roads/--buildings, not both")
    source, mask_config = _mask_inputs({**kw, "osm": store or kw["osm"], "max_pixels": None})
    model, render_config = _render_inputs(kw)
    limit = {"max_pixels": kw["max_pixels"]} if kw["max_pixels"] is not None else {}

    def job(progress: Any) -> Any:
        config = RegionConfig(chunk_px=chunk_px, workers=cluster_workers, scheduler=scheduler, device=kw["device"],
                              resources={"GPU": 1} if gpu_per_chunk else {}, cog=kw["cog"], **limit)
        return run_region(source, outdir, model, mask_config, replace(render_config, cog=False), config, progress,
                          on_cluster=_show_dashboard)

    result = _run(job, kw["progress_mode"])
    _done(f"wrote {result.mosaic} ({result.grid.width}×{result.grid.height} px in {len(result.plan)} chunks: "
          f"{result.rendered} rendered, {result.reused} unchanged, {result.empty} empty; {result.seconds:.1f} s)"
          + (f" and {result.cog}" if result.cog else ""), kw["progress_mode"])


def _show_dashboard(link: str | None) -> None:
    if link:
        click.echo(f"Dask dashboard: {link}", err=True)
