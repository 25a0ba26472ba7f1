"""Model-quality benchmark (issue 16): what a user sees at 1:1, for generators side by side with real imagery.

For each model (default: the shipped ``satgen-default.safetensors``; ``--checkpoint NAME=PATH``
adds others; ``--random-init`` adds the untrained generator with PyTorch's default and with
ICNR initialisation, for the diagnosis):

1. **Checkerboard score** (:func:`~satgen_geo.evaluate.quality.checkerboard_score`: power on
   the period-2 line of the luminance spectrum over its neighbours, along x and y) of the
   top-left 1024² px of ``satgen generate --osm sample_aoi/kotka-suburb.osm.pbf --aoi
   sample_aoi/aoi.geojson --seed 0 --checkpoint MODEL`` (run as a subprocess, wall time
   printed: it must stay under 2 minutes), against the same score on the top-left 1024² px
   of each real Massachusetts tile. Pass: the worse axis within 2× of the real tiles' mean.
2. **Roof colour** (:func:`~satgen_geo.evaluate.quality.roof_colour`): mean RGB and greenness
   ``G - (R + B) / 2`` inside the painted buildings of renders (seed 0, stochastic, as
   ``satgen generate``) of the 5 seed pairs' and 4 Inria patches' masks, and of a synthetic
   grid of houses along streets; against the labelled building pixels of the real images of
   those 9 pairs (greenness percentiles over pixels). Building/ground contrast: RGB distance
   between the mean colour inside the buildings and in a 2–4 px ring around them, mean over
   images. Pass: mean greenness of the roofs ≤ the real roofs' 90th percentile, and contrast
   at least half the real images'.
3. **Held-out metrics** of ``satgen evaluate`` (:func:`~satgen_geo.evaluate.run_evaluation`,
   deterministic, seed 0) on the model card's 9 held-out patches: L1, PSNR, SSIM and the
   EfficientNet-Lite0 feature distance (v1: 293.3).

Run: ``.venv/bin/python benchmarks/bench_model_quality.py [--checkpoint v2=PATH] [--random-init]
[--png satgen_geo/models/quality_crops.png]`` (about 2 minutes per model on 2 shared cores).
The printed table is ``benchmarks/RESULTS_model_quality.txt``.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
import torch
from PIL import Image

from satgen_geo.evaluate import run_evaluation
from satgen_geo.evaluate.quality import checkerboard_score, house_grid_mask, roof_colour
from satgen_geo.evaluate.run import generate_images
from satgen_geo.model.checkpoint import save_generator
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.loaded import DEFAULT_CHECKPOINT, load_model
from satgen_geo.train.checkerboard import icnr_init_
from satgen_geo.train.datasets import Pair, PatchConfig, prepare_satgen_cv, prepare_single_class, read_split
from satgen_geo.train.rng import seeded_init
from satgen_geo.train.trainer import has_buildings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "train"
SATGEN = Path(sys.executable).with_name("satgen")
CROP = 1024
SAMPLE_AREA = ("--osm", str(ROOT / "sample_aoi/kotka-suburb.osm.pbf"), "--aoi", str(ROOT / "sample_aoi/aoi.geojson"))
V1_FEATURE_DISTANCE = 293.3
SHEET_PX, GAP_PX = 256, 4


@dataclass
class Measured:
    """One model's (or the real imagery's) numbers."""

    name: str
    checker: tuple[float, float]
    seconds: float | None
    roofs: dict[str, tuple[tuple[float, float, float], float, float]]  # set → (mean RGB, greenness, contrast)
    metrics: dict[str, float]
    sample: np.ndarray | None
    renders: list[np.ndarray]


def _data(folder: Path | None, scratch: Path) -> Path:
    """The model card's dataset (``scripts/train_default_model.sh``), prepared if not given."""
    if folder is not None:
        return folder
    out = scratch / "data"
    prepare_satgen_cv(SHARED / "seed-pairs", out)
    prepare_single_class(SHARED / "massachusetts", out, "roads", PatchConfig(stride_px=64, holdout_right=0.3))
    prepare_single_class(SHARED / "inria-austin", out, "buildings", PatchConfig())
    return out


def _house_grid() -> Pair:
    mask = house_grid_mask()
    return Pair("house-grid", mask, np.zeros((3, *mask.shape[1:]), dtype=np.uint8))


def _roofs(images: list[np.ndarray], buildings: list[np.ndarray]) -> tuple[tuple[float, float, float], float, float, np.ndarray]:
    """Pooled mean RGB and greenness inside buildings, mean contrast over images, all building greenness values."""
    stats = [s for s in (roof_colour(img, b) for img, b in zip(images, buildings, strict=True)) if s]
    weights = np.array([s.n_pixels for s in stats], dtype=np.float64)
    rgb = np.average([s.mean_rgb for s in stats], axis=0, weights=weights)
    mean = (float(rgb[0]), float(rgb[1]), float(rgb[2]))
    values = np.concatenate([s.greenness for s in stats])
    return mean, float(values.mean()), float(np.mean([s.contrast for s in stats])), values


def _sample(checkpoint: Path, scratch: Path) -> tuple[np.ndarray, float]:
    out = scratch / f"{checkpoint.stem}-sample.tif"
    started = time.perf_counter()
    subprocess.run([str(SATGEN), "generate", *SAMPLE_AREA, "--seed", "0", "--checkpoint", str(checkpoint), "-o", str(out),
                    "--progress", "none"], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    with rasterio.open(out) as src:
        return src.read((1, 2, 3), window=((0, CROP), (0, CROP))), seconds


def _sample_buildings(scratch: Path) -> np.ndarray:
    """The buildings band of the sample area's mask, top-left 1024² px (the same grid as the render)."""
    out = scratch / "sample-mask.tif"
    subprocess.run([str(SATGEN), "mask", *SAMPLE_AREA, "-o", str(out), "--progress", "none"], check=True, capture_output=True)
    with rasterio.open(out) as src:
        return src.read(2, window=((0, CROP), (0, CROP))) > 0


def _measure(
    name: str, checkpoint: Path, data: Path, roof_sets: dict[str, list[Pair]], sample_buildings: np.ndarray, scratch: Path,
) -> Measured:
    model = load_model(checkpoint, "cpu")
    sample, seconds = _sample(checkpoint, scratch)
    score = checkerboard_score(sample)
    mean, green, contrast, _ = _roofs([sample], [sample_buildings])
    roofs, renders = {"Kotka sample": (mean, green, contrast)}, []
    for set_name, pairs in roof_sets.items():
        images = generate_images(model, pairs, deterministic=False, seed=0)
        renders += images
        mean, green, contrast, _ = _roofs(images, [p.mask[1] > 0 for p in pairs])
        roofs[set_name] = (mean, green, contrast)
    report = run_evaluation(model, data, "val", out_dir=scratch / f"eval-{name}")
    metrics = {k: float(report["metrics"][k]) for k in ("l1", "psnr", "ssim", "feature_distance_effnet_lite0")}
    return Measured(name, (score.x, score.y), seconds, roofs, metrics, sample, renders)


def _random_init(icnr: bool, scratch: Path) -> Path:
    spec = load_model(None, "cpu").spec
    with seeded_init(0):
        generator = UNetGenerator(spec.in_channels, spec.out_channels, spec.features)
    if icnr:
        icnr_init_(generator)
    name = "random-init-icnr" if icnr else "random-init"
    return save_generator(generator, replace(spec, name=name), scratch / f"{name}.safetensors")


def _real(roof_sets: dict[str, list[Pair]]) -> tuple[Measured, list[float], np.ndarray]:
    scores = []
    for path in sorted((SHARED / "massachusetts/images").glob("*.jpg")):
        rgb = np.moveaxis(np.asarray(Image.open(path).convert("RGB")), -1, 0)[:, :CROP, :CROP]
        scores.append(checkerboard_score(rgb))
    real_pairs = roof_sets["seed+inria"]
    mean, green, contrast, values = _roofs([p.image for p in real_pairs], [p.mask[1] > 0 for p in real_pairs])
    checker = (float(np.mean([s.x for s in scores])), float(np.mean([s.y for s in scores])))
    real = Measured("real", checker, None, {"seed+inria": (mean, green, contrast)}, {}, None,
                    [p.image for p in real_pairs])
    return real, [s.worst for s in scores], values


def _table(models: list[Measured], real: Measured, real_worst: list[float], real_green: np.ndarray) -> str:
    p10, p50, p90 = np.percentile(real_green, [10, 50, 90])
    real_contrast = real.roofs["seed+inria"][2]
    checker_bar = 2 * float(np.mean(real_worst))
    lines = [
        f"# bench_model_quality on {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "",
        "## Checkerboard score, top-left 1024² px (x = alternating columns, y = rows; 1 = no peak)",
        f"real Massachusetts tiles: x {real.checker[0]:.2f}, y {real.checker[1]:.2f} (mean of 2 tiles; worse axis "
        f"{', '.join(f'{w:.2f}' for w in real_worst)}); pass bar: worse axis ≤ {checker_bar:.2f}",
        "| model | x | y | pass | satgen generate (s) |",
        "|---|---|---|---|---|",
    ]
    for m in models:
        ok = "yes" if max(m.checker) <= checker_bar else "no"
        lines.append(f"| {m.name} | {m.checker[0]:.2f} | {m.checker[1]:.2f} | {ok} | {m.seconds:.1f} |")
    lines += [
        "",
        "## Roof colour inside painted buildings (uint8 RGB; greenness = G - (R + B) / 2; contrast = |roof - ring| RGB)",
        f"real roofs (labelled building pixels of the 5 seed pairs + 4 Inria patches): mean RGB "
        f"{_rgb(real.roofs['seed+inria'][0])}, greenness mean {real.roofs['seed+inria'][1]:.1f}, "
        f"p10/p50/p90 {p10:.1f} / {p50:.1f} / {p90:.1f}; contrast {real_contrast:.1f}",
        f"pass bar: greenness ≤ {p90:.1f} (real p90) and contrast ≥ {real_contrast / 2:.1f} (half the real) on each set; "
        "the seed and Inria masks are training pairs, the house grid and the Kotka sample (its OSM buildings in the "
        "1024² crop) are not",
        "| model | set | mean RGB | greenness | contrast | pass |",
        "|---|---|---|---|---|---|",
    ]
    for m in models:
        for set_name, (rgb, green, contrast) in m.roofs.items():
            ok = "yes" if green <= p90 and contrast >= real_contrast / 2 else "no"
            lines.append(f"| {m.name} | {set_name} | {_rgb(rgb)} | {green:.1f} | {contrast:.1f} | {ok} |")
    lines += [
        "",
        f"## Held-out metrics (satgen evaluate, 9 patches, deterministic; v1's feature distance {V1_FEATURE_DISTANCE})",
        "| model | L1 | PSNR | SSIM | feature distance (Lite0) |",
        "|---|---|---|---|---|",
    ]
    for m in models:
        k = m.metrics
        lines.append(f"| {m.name} | {k['l1']:.4f} | {k['psnr']:.2f} | {k['ssim']:.3f} | "
                     f"{k['feature_distance_effnet_lite0']:.1f} |")
    return "\n".join(lines)


def _rgb(rgb: tuple[float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in rgb) + ")"


def _sheet(models: list[Measured], real: Measured, path: Path) -> None:
    """1:1 crops: per row, 256² of the sample render, then seed pairs 0 and 2 and Inria patch 0 (real first)."""
    rows = [[np.zeros((3, SHEET_PX, SHEET_PX), np.uint8), *(real.renders[i] for i in (0, 2, 5))]]
    rows += [[m.sample[:, 384:640, 384:640], *(m.renders[i] for i in (0, 2, 5))] for m in models if m.sample is not None]
    step = SHEET_PX + GAP_PX
    sheet = np.full((len(rows) * step, 4 * step, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            tile = np.moveaxis(panel[:, :SHEET_PX, :SHEET_PX], 0, -1)
            sheet[r * step : r * step + SHEET_PX, c * step : c * step + SHEET_PX] = tile
    Image.fromarray(sheet).quantize(256).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="another model to measure")
    parser.add_argument("--random-init", action="store_true", help="also the untrained generator, default and ICNR init")
    parser.add_argument("--data", type=Path, help="the model card's prepared dataset (default: prepared here)")
    parser.add_argument("--png", type=Path, help="write 1:1 crops (real first row, then each model) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        data = _data(args.data, scratch)
        labelled = [p for p in read_split(data, "train") if has_buildings(p)]
        roof_sets = {"seed+inria": labelled, "house grid": [_house_grid()]}
        checkpoints = [("v1 (shipped)", DEFAULT_CHECKPOINT)]
        if args.random_init:
            checkpoints += [("random init", _random_init(False, scratch)), ("random init, ICNR", _random_init(True, scratch))]
        checkpoints += [(n, Path(p)) for n, p in (c.split("=", 1) for c in args.checkpoint)]
        sample_buildings = _sample_buildings(scratch)
        models = [_measure(name, path, data, roof_sets, sample_buildings, scratch) for name, path in checkpoints]
        real, real_worst, real_green = _real(roof_sets)
        print(_table(models, real, real_worst, real_green))
        if args.png:
            _sheet(models, real, args.png)


if __name__ == "__main__":
    main()
