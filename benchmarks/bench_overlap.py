"""Overlap benchmark: which window overlap the shipped model should render with by default.

For overlap 128 (the shipped spec's), 96, 64 and 32 px of the 256 px window, with the shipped
model ``satgen-default.safetensors`` on this CPU, measured side by side in one run:

1. windows and render time of one mask (the bundled Kotka extract, 2199×2230 px at 1 m;
   default stochastic settings, seed 0; the fastest of ``--reps`` interleaved repetitions,
   the whole :func:`~satgen_geo.engine.render` call incl. writing and overviews);
2. the seam score (:func:`~satgen_geo.evaluate.seams.seam_score_geotiff`: mean absolute
   difference across window-boundary lines over that across all other lines; 1 = no seam)
   of those renders, stochastic with seeds 0, 1, 2 and deterministic. It looks only at the
   boundary lines themselves, where a cosine ramp starts at almost zero weight, so it also
   reports the *blend-band sharpness ratio*: the mean gradient magnitude of the render
   where ≥ 2 windows are mixed about equally (effective samples ``1/Σw² ≥ 1.9``) over that
   where one window dominates (``1/Σw² ≤ 1.1``). Averaging stochastic outputs blurs, so
   a ratio below 1 is a texture grid with the period of the window stride;
3. on the held-out split of the model card (right 30 % of both Massachusetts tiles,
   x ≥ 1050 px; roads-only JPEG labels thresholded at 127, buildings band zero), each strip
   rendered as one 450×1500 px area through the real engine (mask GeoTIFF in EPSG:32619 at
   1 m/px): the feature distance (:func:`~satgen_geo.evaluate.frechet.frechet_distance` of
   :class:`~satgen_geo.evaluate.features.FeatureExtractor` features, EfficientNet-Lite0) of
   the render against the real image over all 256 px crops at stride 64 without white
   no-data (same rule as ``satgen dataset prepare``), and over the model card's 9
   held-out patches; stochastic seeds 0, 1, 2 (their spread is the run-to-run noise) and
   deterministic. Sharpness of the same crops: mean gradient magnitude and variance of the
   Laplacian of the luminance, renders against the real photo;
4. ``satgen_geo/models/overlap_crops.png``: the same 256×256 px (one window) of a held-out
   strip at 1:1, real photo then each overlap (seed 0), side by side (a 256-colour PNG, so
   that it stays under 400 KB; 384 px panels would be 700 KB).

Before anything is timed, each mode renders once (the engine may convert or calibrate the
network on its first call in a process). Timings note how many cores other processes kept
busy meanwhile (``/proc/stat``), as the CPU is shared.

Run: ``.venv/bin/python benchmarks/bench_overlap.py [--reps 3] [--png PATH]`` (about 5 minutes
on 2 idle CPU cores, 7.5 with other jobs on them). The printed table is ``benchmarks/RESULTS_overlap.txt``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from PIL import Image, ImageDraw
from rasterio.crs import CRS

from satgen_geo.engine import RenderConfig, RenderResult, render
from satgen_geo.evaluate import FeatureExtractor, frechet_distance, seam_score_geotiff
from satgen_geo.geotiff import open_for_writing, profile
from satgen_geo.grid import Grid
from satgen_geo.mask import MaskSource, build_mask
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.rasterize import BAND_NAMES
from satgen_geo.runtime import tune_allocator
from satgen_geo.tiling import plan_windows, window_slices, window_weights
from satgen_geo.train.datasets import _MAX_NODATA, _WHITE, PatchConfig, iter_patches

ROOT = Path(__file__).resolve().parents[1]
OSM = ROOT / "sample_aoi" / "kotka-suburb.osm.pbf"
MASS = ROOT.parent / "shared" / "data" / "train" / "massachusetts"
PNG = ROOT / "satgen_geo" / "models" / "overlap_crops.png"
OVERLAPS = (128, 96, 64, 32)
SEEDS = (0, 1, 2)
HOLDOUT = 0.3  # the model card's split: right 30 % of each tile
CROP_PX, CROP_STRIDE = 256, 64
VIS_PX, GAP_PX, LABEL_PX = 256, 6, 22  # 5 panels of 256² in 256 colours: about 310 KB
UTM19N = CRS.from_epsg(32619)
#: A held-out strip: tile name, mask GeoTIFF, real RGB ``(3, H, W)``, x offset in the tile, road pixels ``(H, W)``.
Strip = tuple[str, Path, np.ndarray, int, np.ndarray]
MODES: tuple[str, ...] = ("det", *(f"seed{s}" for s in SEEDS))


def _config(mode: str, overlap: int) -> RenderConfig:
    if mode == "det":
        return RenderConfig(deterministic=True, overlap_px=overlap)
    return RenderConfig(seed=int(mode.removeprefix("seed")), overlap_px=overlap)


def _read_rgb(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read((1, 2, 3))


# --------------------------------------------------------------------------- image statistics


def _luma(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb.astype(np.float64)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _grad_mag(rgb: np.ndarray) -> np.ndarray:
    """Central-difference gradient magnitude of the luminance, ``(H-2, W-2)``."""
    y = _luma(rgb)
    gx = (y[1:-1, 2:] - y[1:-1, :-2]) / 2.0
    gy = (y[2:, 1:-1] - y[:-2, 1:-1]) / 2.0
    return np.hypot(gx, gy)


def _laplacian_var(rgb: np.ndarray) -> float:
    y = _luma(rgb)
    lap = y[1:-1, :-2] + y[1:-1, 2:] + y[:-2, 1:-1] + y[2:, 1:-1] - 4.0 * y[1:-1, 1:-1]
    return float(lap.var())


def _effective_samples(height: int, width: int, overlap: int) -> np.ndarray:
    """``1 / Σ w²`` per pixel: how many window outputs a pixel averages, counting weights."""
    plan = plan_windows(height, width, 256, overlap)
    sq = np.zeros((height, width))
    for window in plan:
        raster, tile = window_slices(window, plan)
        sq[raster] += window_weights(window, plan)[tile].astype(np.float64) ** 2
    return 1.0 / sq


def _band_ratio(images: list[np.ndarray], samples: list[np.ndarray]) -> float:
    """Mean gradient magnitude where windows are mixed (≥ 1.9 samples) over where one dominates (≤ 1.1).

    Pooled over ``images`` (each with its own ``samples`` map; NaN pixels are left out). On
    an image that was not blended (the real photo) it shows how far from 1 it strays by chance.
    """
    grads = [_grad_mag(rgb) for rgb in images]
    ns = [n[1:-1, 1:-1] for n in samples]
    mixed = np.concatenate([g[n >= 1.9] for g, n in zip(grads, ns, strict=True)])
    single = np.concatenate([g[n <= 1.1] for g, n in zip(grads, ns, strict=True)])
    return float(mixed.mean() / single.mean())


# --------------------------------------------------------------------------- inputs


def _holdout_strips(folder: Path) -> list[Strip]:
    """Per Massachusetts tile: (name, 2-band mask GeoTIFF of the held-out strip, real RGB strip, strip x0, roads)."""
    strips = []
    for image_path in sorted((MASS / "images").glob("*.jpg")):
        image = np.moveaxis(np.asarray(Image.open(image_path).convert("RGB")), -1, 0)
        label = np.asarray(Image.open(MASS / "labels" / image_path.name).convert("L")) > 127
        x0 = int(image.shape[2] * (1 - HOLDOUT))  # as iter_patches splits: 1050 of 1500 px
        mask = np.zeros((2, image.shape[1], image.shape[2] - x0), dtype=np.uint8)
        mask[0][label[:, x0:]] = 255
        grid = Grid(UTM19N, Affine(1.0, 0.0, 300_000.0, 0.0, -1.0, 4_700_000.0), mask.shape[2], mask.shape[1])
        path = folder / f"mask-{image_path.stem}.tif"
        tags = {"SOURCE": f"Massachusetts Roads {image_path.stem} held-out strip", "ATTRIBUTION": "Mnih 2013"}
        with open_for_writing(path, profile(grid, 2), BAND_NAMES, tags, overviews=False) as dst:
            dst.write(mask)
        strips.append((image_path.stem, path, image[:, :, x0:], x0, mask[0] > 0))
    return strips


def _valid(real: np.ndarray) -> bool:
    """The dataset-preparation rule: at most 1 % white no-data pixels."""
    return bool((real.min(axis=0) >= _WHITE).mean() <= _MAX_NODATA)


def _crop_sets(strips: list[Strip]) -> dict[str, list[tuple[int, int, int]]]:
    """(strip index, row, col in the strip) of the dense crops and of the model card's 9 held-out patches."""
    dense, card = [], []
    for i, (_, _, real, x0, _) in enumerate(strips):
        height, width = real.shape[1:]
        for row in range(0, height - CROP_PX + 1, CROP_STRIDE):
            for col in range(0, width - CROP_PX + 1, CROP_STRIDE):
                if _valid(real[:, row : row + CROP_PX, col : col + CROP_PX]):
                    dense.append((i, row, col))
        for split, row, col in iter_patches(height, width + x0, PatchConfig(CROP_PX, CROP_STRIDE, HOLDOUT)):
            if split == "val" and _valid(real[:, row : row + CROP_PX, col - x0 : col - x0 + CROP_PX]):
                card.append((i, row, col - x0))
    return {"dense": dense, "card": card}


def _crops(images: list[np.ndarray], where: list[tuple[int, int, int]]) -> list[np.ndarray]:
    return [images[i][:, r : r + CROP_PX, c : c + CROP_PX] for i, r, c in where]


# --------------------------------------------------------------------------- figure


def _visual_place(strips: list[Strip]) -> tuple[int, int, int]:
    """The VIS_PX square (strip, row, col) with the most road pixels and no white no-data."""
    best: tuple[int, tuple[int, int, int]] = (-1, (0, 0, 0))
    for i, (_, _, real, _, roads) in enumerate(strips):
        height, width = real.shape[1:]
        col = (width - VIS_PX) // 2
        for row in range(0, height - VIS_PX + 1, 32):
            patch = real[:, row : row + VIS_PX, col : col + VIS_PX]
            if (patch.min(axis=0) >= _WHITE).any():
                continue
            best = max(best, (int(roads[row : row + VIS_PX, col : col + VIS_PX].sum()), (i, row, col)))
    return best[1]


def _figure(panels: list[tuple[str, np.ndarray]], path: Path) -> int:
    """Panels side by side under one-line labels, as a 256-colour PNG; returns its size in bytes."""
    width = len(panels) * VIS_PX + (len(panels) - 1) * GAP_PX
    sheet = Image.new("RGB", (width, VIS_PX + LABEL_PX), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (label, rgb) in enumerate(panels):
        x = k * (VIS_PX + GAP_PX)
        draw.text((x + 4, 5), label, fill="black")
        sheet.paste(Image.fromarray(np.moveaxis(rgb, 0, -1)), (x, LABEL_PX))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path.stat().st_size


# --------------------------------------------------------------------------- main


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine from ``/proc/stat``, CPU seconds of this process)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    own = os.times()
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), own.user + own.system


def _timed(mask: Path, out: Path, model: LoadedModel, config: RenderConfig) -> tuple[RenderResult, float, float]:
    """Render; return the result, this process's CPU seconds and the cores other processes kept busy meanwhile."""
    (all0, own0), wall0 = _cpu_seconds(), time.perf_counter()
    result = render(mask, out, model, config)
    (all1, own1), wall = _cpu_seconds(), time.perf_counter() - wall0
    return result, own1 - own0, max(0.0, ((all1 - all0) - (own1 - own0)) / wall)


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):6.1f} ± {np.std(values, ddof=1):3.1f}"


@dataclass
class Kotka:
    """Part 1-2 results, per overlap (and mode)."""

    size: tuple[int, int] = (0, 0)
    times: dict[int, list[tuple[float, float, float]]] = field(default_factory=dict)  # (s, CPU s, others' cores)
    windows: dict[int, int] = field(default_factory=dict)
    samples: dict[int, float] = field(default_factory=dict)
    seams: dict[tuple[int, str], float] = field(default_factory=dict)
    bands: dict[tuple[int, str], float] = field(default_factory=dict)


def _kotka_part(folder: Path, model: LoadedModel, reps: int, warm_mask: Path) -> Kotka:
    mask = folder / "kotka.tif"
    build_mask(mask, MaskSource(osm=OSM))
    with rasterio.open(mask) as src:
        height, width = src.height, src.width
    for mode in ("det", "seed0"):  # first calls may convert or calibrate the network
        render(warm_mask, folder / "warm.tif", model, _config(mode, OVERLAPS[0]))
    k = Kotka(size=(width, height), times={ov: [] for ov in OVERLAPS})
    maps = {ov: _effective_samples(height, width, ov) for ov in OVERLAPS}
    for rep in range(reps):
        for ov in OVERLAPS:
            for mode in MODES if rep == 0 else ("seed0",):
                out = folder / f"kotka-{ov}-{mode}.tif"
                result, cpu, others = _timed(mask, out, model, _config(mode, ov))
                if mode == "seed0":
                    k.times[ov].append((result.seconds, cpu, others))
                    k.windows[ov] = result.windows
                if rep == 0:
                    k.seams[ov, mode] = seam_score_geotiff(out, overlap_px=ov)
                    k.bands[ov, mode] = _band_ratio([_read_rgb(out)], [maps[ov]])
                out.unlink()
    k.samples = {ov: float(maps[ov].mean()) for ov in OVERLAPS}
    return k


def _figure_panels(strips: list[Strip], renders: dict[tuple[int, str], list[np.ndarray]]) -> tuple[str, list]:
    i, row, col = _visual_place(strips)
    cut = (slice(None), slice(row, row + VIS_PX), slice(col, col + VIS_PX))
    place = f"{strips[i][0]} x {strips[i][3] + col}, y {row}"
    panels = [(f"real photo ({place})", strips[i][2][cut])]
    panels += [(f"overlap {ov} px, seed 0", renders[ov, "seed0"][i][cut]) for ov in OVERLAPS]
    return place, panels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="interleaved timing repetitions (fastest kept)")
    parser.add_argument("--png", type=Path, default=PNG, help="where to write the side-by-side crop")
    args = parser.parse_args()
    started = time.perf_counter()
    tune_allocator()
    model = load_model(device="cpu")
    print(f"bench_overlap: {_cpu_model()}, {platform.machine()}, {os.cpu_count()} CPU(s), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}, rasterio {rasterio.__version__}")
    print(f"model {model.spec.name} (features {model.spec.features}, spec overlap {model.spec.overlap_px} px, "
          f"tile {model.spec.tile_px} px), sha256 {model.sha256[:12]}…; load average at start {_load()}")

    laps: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-overlap-") as tmp:
        folder = Path(tmp)
        strips = _holdout_strips(folder)
        kotka = _kotka_part(folder, model, args.reps, strips[0][1])
        laps["Kotka renders"] = time.perf_counter() - started
        renders: dict[tuple[int, str], list[np.ndarray]] = {}
        for ov in OVERLAPS:
            for mode in MODES:
                renders[ov, mode] = []
                for name, mask, _, _, _ in strips:
                    out = folder / f"{name}-{ov}-{mode}.tif"
                    render(mask, out, model, _config(mode, ov))
                    renders[ov, mode].append(_read_rgb(out))
                    out.unlink()
        laps["held-out renders"] = time.perf_counter() - started - sum(laps.values())

    reals = [real for _, _, real, _, _ in strips]
    crop_sets = _crop_sets(strips)
    extractor = FeatureExtractor("cpu")
    real_feats = {key: extractor(_crops(reals, where)) for key, where in crop_sets.items()}
    fd = {
        (ov, mode, key): frechet_distance(extractor(_crops(images, where)), real_feats[key])
        for (ov, mode), images in renders.items() for key, where in crop_sets.items()
    }

    def sharpness(images: list[np.ndarray]) -> tuple[float, float]:
        crops = _crops(images, crop_sets["dense"])
        return float(np.mean([_grad_mag(c).mean() for c in crops])), float(np.mean([_laplacian_var(c) for c in crops]))

    real_grad, real_lap = sharpness(reals)
    strip_maps = {  # effective samples per pixel of each strip's lattice, NaN on white no-data
        ov: [np.where(real.min(axis=0) < _WHITE, _effective_samples(*real.shape[1:], ov), np.nan) for real in reals]
        for ov in OVERLAPS
    }
    laps["features and statistics"] = time.perf_counter() - started - sum(laps.values())
    place, panels = _figure_panels(strips, renders)
    png_bytes = _figure(panels, args.png)

    base = OVERLAPS[0]
    fastest = {ov: min(kotka.times[ov]) for ov in OVERLAPS}
    print(f"\n1. Kotka mask {kotka.size[0]}×{kotka.size[1]} px (1 m, roads and buildings), default stochastic "
          f"settings, seed 0, batch 8; render time = fastest of {args.reps} interleaved (wall s, [cores other processes "
          "kept busy meanwhile]) and this process's CPU seconds in that run (less sensitive to a busy machine)")
    print("  overlap  windows  fewer    wall s [others]  speed-up   CPU s  speed-up   mean samples/px (1/Σw²)")
    for ov in OVERLAPS:
        print(f"  {ov:5d}   {kotka.windows[ov]:6d}  {kotka.windows[base] / kotka.windows[ov]:4.2f}×  "
              f"{fastest[ov][0]:6.2f} [{fastest[ov][2]:.2f}]    {fastest[base][0] / fastest[ov][0]:4.2f}×   "
              f"{fastest[ov][1]:6.2f}  {fastest[base][1] / fastest[ov][1]:4.2f}×     {kotka.samples[ov]:5.2f}")
    print("\n2. seam score (1 = window-boundary lines as smooth as all other lines) and blend-band sharpness "
          "ratio (|∇Y| where ≥ 2 windows mix / where one dominates; < 1 = a blur grid), Kotka renders of part 1")
    print("  overlap   seam: det  seed0  seed1  seed2    band: det  seed0  seed1  seed2")
    for ov in OVERLAPS:
        seam = "  ".join(f"{kotka.seams[ov, m]:5.3f}" for m in MODES)
        band = "  ".join(f"{kotka.bands[ov, m]:5.3f}" for m in MODES)
        print(f"  {ov:5d}        {seam}         {band}")
    print("  band ratio on the held-out strips (part 3, no-data left out): renders det / seed0, and the real photo "
          "under the same lattice (its spread from 1 is the noise)")
    for ov in OVERLAPS:
        ratios = [_band_ratio(images, strip_maps[ov]) for images in (renders[ov, "det"], renders[ov, "seed0"], reals)]
        print(f"  {ov:5d}        det {ratios[0]:5.3f}  seed0 {ratios[1]:5.3f}  real photo {ratios[2]:5.3f}")

    n_dense, n_card = len(crop_sets["dense"]), len(crop_sets["card"])
    print(f"\n3. held-out strips ({', '.join(s[0] for s in strips)}: x ≥ {strips[0][3]} px, "
          f"{' and '.join(f'{r.shape[2]}×{r.shape[1]}' for r in reals)} px), each rendered whole")
    print(f"  feature distance (EfficientNet-Lite0 Fréchet, lower is better) over {n_dense} crops of 256 px at stride "
          f"{CROP_STRIDE} without no-data ('dense') and over the model card's {n_card} held-out patches ('card'); "
          f"stochastic: mean ± sd over seeds {', '.join(map(str, SEEDS))}")
    print(f"  sharpness over the dense crops: mean |∇Y| and Laplacian variance of the luminance; "
          f"real photo {real_grad:.2f} and {real_lap:.0f}")
    print("  overlap   FD dense: det  stochastic      FD card: det  stochastic      |∇Y|: det  stoch    lap var: det  stoch")
    for ov in OVERLAPS:
        dense = [fd[ov, m, "dense"] for m in MODES[1:]]
        card = [fd[ov, m, "card"] for m in MODES[1:]]
        g_det, l_det = sharpness(renders[ov, "det"])
        stoch = np.mean([sharpness(renders[ov, m]) for m in MODES[1:]], axis=0)
        print(f"  {ov:5d}          {fd[ov, 'det', 'dense']:6.1f}  {_spread(dense)}           {fd[ov, 'det', 'card']:6.1f}"
              f"  {_spread(card)}        {g_det:5.2f}  {stoch[0]:5.2f}         {l_det:5.0f}  {stoch[1]:5.0f}")
    for key in crop_sets:
        print(f"  per seed, FD {key}: " + ";  ".join(
            f"{ov}: " + " ".join(f"{fd[ov, m, key]:.1f}" for m in MODES[1:]) for ov in OVERLAPS))
    print(f"\n4. {args.png.name}: {VIS_PX}×{VIS_PX} px at 1:1 ({place}), real photo + {len(OVERLAPS)} overlaps, "
          f"{png_bytes / 1024:.0f} KB")
    print(f"\ntotal {time.perf_counter() - started:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in laps.items())}); "
          f"load average at end {_load()}")


if __name__ == "__main__":
    main()
