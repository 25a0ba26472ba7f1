"""The training-data commands of the ``satgen`` command line: ``satgen dataset prepare``, ``complete``, ``from-ortho``.

Registered on the main group by :mod:`satgen_geo.cli`; each command parses, calls one core function
(:mod:`satgen_geo.train.datasets`, :mod:`satgen_geo.train.sam`) and lets the group map its errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from satgen_geo.cli import _done, _overpass, _progress_option, _run
from satgen_geo.cli_report import SatgenGroup


@click.group(cls=SatgenGroup)
def dataset() -> None:
    """Prepare training pairs (images + masks) from the supported layouts."""


def _patch_options(func: Callable) -> Callable:
    options = [
        click.option("--patch", type=int, default=256, show_default=True, help="Patch size in pixels."),
        click.option("--stride", type=int, default=256, show_default=True, help="Step between training patches."),
        click.option("--holdout-right", type=float, default=0.0, show_default=True, help="Fraction of each large image (right side) held out for validation."),
        click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Dataset folder (created or extended)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _patch_config(kw: dict[str, Any]) -> Any:
    from satgen_geo.train.datasets import PatchConfig

    return PatchConfig(patch_px=kw["patch"], stride_px=kw["stride"], holdout_right=kw["holdout_right"])


def _summary(summary: Any, output: str) -> None:
    notes = "; ".join(summary.notes)
    click.echo(f"{output}: {summary.written['train']} train and {summary.written['val']} val pairs written, "
               f"{summary.skipped_nodata} no-data patches skipped ({notes})")


@dataset.command("prepare")
@click.argument("source", type=click.Path(file_okay=False, exists=True))
@click.option("--layout", required=True, type=click.Choice(["satgen-cv", "roads", "buildings", "both"]),
              help="satgen-cv: images/ + masks/*_processed.tiff (channels buildings, roads); roads/buildings: images/ + labels/ with that one class; both: images/ + masks/*.png (red roads, green buildings), as 'satgen dataset complete' writes.")
@_patch_options
def dataset_prepare(source: str, layout: str, output: str, **kw: Any) -> None:
    """Cut SOURCE (images/ + masks/ or labels/) into 256 px training pairs in OUTPUT."""
    from satgen_geo.train.datasets import prepare_satgen_cv, prepare_single_class, prepare_two_class

    if layout == "satgen-cv":
        summary = _run(lambda: prepare_satgen_cv(source, output))
    elif layout == "both":
        summary = _run(lambda: prepare_two_class(source, output, _patch_config(kw)))
    else:
        summary = _run(lambda: prepare_single_class(source, output, layout, _patch_config(kw)))
    _summary(summary, output)


def _sam_options(func: Callable) -> Callable:
    """SAM 3's options (the [sam] extra), shared by 'dataset complete' and 'dataset from-ortho'."""
    options = [
        click.option("--sam-model", metavar="PATH_OR_ID", help="SAM 3 weights: a folder (e.g. from 'hf download facebook/sam3 --local-dir DIR') or a model id already in the Hugging Face cache; nothing is downloaded."),
        click.option("--prompt", default="", help="Text prompt SAM 3 segments [building or road]."),
        click.option("--threshold", type=float, default=0.5, show_default=True, help="Keep SAM 3 instances scoring above this (0 to 1)."),
        click.option("--min-area-px", type=int, default=16, show_default=True, help="Drop SAM 3 instances smaller than this many pixels."),
        click.option("--batch-size", type=int, default=2, show_default=True, help="Images or windows per SAM 3 call (1 to 32)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _sam_config(missing: str, kw: dict[str, Any]) -> Any:
    from satgen_geo.train.sam import SamConfig

    return SamConfig(missing=missing, model=kw["sam_model"] or "", prompt=kw["prompt"], threshold=kw["threshold"],
                     min_area_px=kw["min_area_px"], batch_size=kw["batch_size"], device=kw["device"])


@dataset.command("complete")
@click.argument("images", type=click.Path(file_okay=False, exists=True))
@click.argument("labels", type=click.Path(file_okay=False, exists=True))
@click.option("--missing", required=True, type=click.Choice(["buildings", "roads"]), help="The class the labels lack; SAM 3 draws it.")
@_sam_options
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder for images/ and masks/ (red roads, green buildings); then 'satgen dataset prepare OUTPUT --layout both'.")
@_progress_option
def dataset_complete(images: str, labels: str, missing: str, output: str, progress_mode: str, **kw: Any) -> None:
    """Add the class that IMAGES' one-class LABELS lack, drawn by SAM 3 (pip install 'satgen-geo[sam]'); resumable."""
    from satgen_geo.train.sam import complete_dataset

    config = _sam_config(missing, kw)
    result = _run(lambda progress: complete_dataset(images, labels, output, config, progress=progress), progress_mode)
    coverage = "n/a" if result.mean_coverage is None else f"{result.mean_coverage:.1%}"
    _done(f"{output}: {result.done} completed, {result.skipped} already complete, {result.failed} failed; "
          f"SAM 3 marked {coverage} of the pixels as {missing} (mean over the files completed)", progress_mode)


@dataset.command("from-ortho")
@click.argument("ortho", type=click.Path(dir_okay=False))
@click.option("--osm", type=click.Path(dir_okay=False), help="Local OSM extract or vector file (default: Overpass).")
@click.option("--overpass-url", default=None, help="Overpass API base URL.")
@click.option("--from-sam", type=click.Choice(["buildings", "roads"]), help="Take this class from SAM 3 (needs --sam-model) instead of OSM.")
@_sam_options
@_patch_options
def dataset_from_ortho(ortho: str, osm: str | None, overpass_url: str | None, from_sam: str | None, output: str, **kw: Any) -> None:
    """Pairs from a georeferenced RGB orthophoto plus OSM drawn on the photo's own grid (one class from SAM 3 with --from-sam)."""
    from satgen_geo.mask import MaskSource
    from satgen_geo.train.datasets import prepare_from_ortho

    if kw["sam_model"] and not from_sam:
        raise click.UsageError("--sam-model needs --from-sam buildings|roads")
    sam = _sam_config(from_sam, kw) if from_sam else None
    source = MaskSource(osm=osm, overpass=_overpass(overpass_url))
    summary = _run(lambda: prepare_from_ortho(ortho, output, source, _patch_config(kw), sam=sam))
    _summary(summary, output)
