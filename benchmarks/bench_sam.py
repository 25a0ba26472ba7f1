"""SAM 3 mask completion benchmark (the ``[sam]`` extra): throughput and peak memory, and the real model's cost.

1. the machine: CPU (named as ``bench_render.py`` names it: :func:`satgen_geo.precision.cpu_info`),
   threads, library versions, and this CPU's float32 peak (``bench_render.machine_peak``);
2. folders, :func:`~satgen_geo.train.sam.complete_dataset` end to end (decode, SAM 3, merge, image
   copy, PNG write) with the tiny randomly initialised SAM 3 the tests build
   (``tests/train/test_sam.py``: 112 px input, 32-wide layers): 8 copies of the two 1500 × 1500 px
   Massachusetts tiles and 16 copies of the four 256 × 256 px Inria patches, batch 1 and 4;
3. georeferenced, :func:`~satgen_geo.train.sam_ortho.complete_ortho` with the same model: an
   orthophoto mirrored from a Massachusetts tile, 2048 px wide and 2048, 8192 and 32768 px tall,
   windows of 1008 px with 128 px overlap, batch 4; windows/s, and the RSS once the model is loaded
   and at its peak, which must not grow with the height;
4. the real SAM 3: its parameters (the default ``Sam3Config()`` instantiated on the meta device),
   the memory its weights take, and then (unless ``--skip-full``) one model of exactly that size
   with random weights, run on one 1008 × 1008 px input: FLOPs (``FlopCounterMode``), seconds and
   peak RSS; the FLOPs divided by this CPU's peak give the lower bound it is compared with.

Each measurement runs in a fresh child process, started through ``sh`` so that its ``ru_maxrss`` is
its own; the tiny model's load time is left out of its rates, and "RSS loaded" is the child's peak
once torch, transformers and the model are loaded, before any image is read. ``--device cuda`` runs parts 2–4 on a
GPU. Run: ``python benchmarks/bench_sam.py`` (about 3 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
import transformers
from PIL import Image
from rasterio.transform import from_origin
from transformers import Sam3Config, Sam3Model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' tiny model

from bench_render import Contention, _fmt_bytes, _peak_rss_bytes, machine_peak  # noqa: E402

from satgen_geo.precision import cpu_info  # noqa: E402
from satgen_geo.tiling import count_windows  # noqa: E402
from satgen_geo.train.sam import SamConfig, SamSegmenter, complete_dataset  # noqa: E402
from satgen_geo.train.sam_ortho import complete_ortho  # noqa: E402
from tests.train.test_sam import save_tiny_sam3  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "train"
WINDOW, OVERLAP = 1008, 128
FOLDERS = {"massachusetts": ("buildings", 8), "inria-austin": ("roads", 16)}  # missing class, copies of each file
ORTHO_SIZES = ((2048, 2048), (8192, 2048), (32768, 2048))  # (height, width)


# --------------------------------------------------------------------------- children


def child(job: dict) -> dict:
    """One measurement in this fresh process."""
    if job["kind"] == "full":
        return full_size(job["device"])
    config = SamConfig(job["missing"], job["model"], batch_size=job["batch"], device=job["device"],
                       window_px=WINDOW, overlap_px=OVERLAP)
    SamSegmenter(config)  # warm-up: imports and caches
    start = time.perf_counter()
    SamSegmenter(config)
    load = time.perf_counter() - start  # what complete_* spend loading, left out of the rate
    loaded = _peak_rss_bytes()
    start = time.perf_counter()
    if job["kind"] == "folder":
        summary = complete_dataset(job["images"], job["labels"], job["out"], config)
        units = summary.done
    else:
        units = complete_ortho(job["ortho"], job["out"], config).windows
    seconds = time.perf_counter() - start - load
    return {"units": units, "seconds": seconds, "load": load, "loaded": loaded, "peak": _peak_rss_bytes()}


def full_size(device: str) -> dict:
    """A SAM 3 of the default size, random weights, on one 1008² input: FLOPs, seconds, peak RSS."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = Sam3Model(Sam3Config()).eval().to(device)
    pixels = torch.randn(1, 3, WINDOW, WINDOW, device=device)
    ids = torch.ones(1, 32, dtype=torch.long, device=device)
    inputs = {"pixel_values": pixels, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(**inputs)  # also the warm-up
        start = time.perf_counter()
        model(**inputs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"flops": counter.get_total_flops(), "seconds": seconds, "peak": _peak_rss_bytes()}


def run_child(job: dict) -> dict:
    """Run ``job`` in a fresh Python started through ``sh`` (as bench_render does: own ``ru_maxrss``)."""
    cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    with Contention() as contention:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{job['kind']} failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-600:]}")
    return {**json.loads(lines[-1][len("RESULT "):]), "note": contention.note()}


# --------------------------------------------------------------------------- inputs


def copies(name: str, count: int, folder: Path) -> tuple[Path, Path]:
    """``count`` copies of every image and label of a shared dataset, under new names."""
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
        for path in sorted((DATA / name / sub).iterdir()):
            for i in range(count):
                shutil.copyfile(path, folder / sub / f"{path.stem}_{i}{path.suffix}")
    return folder / "images", folder / "labels"


def ortho(path: Path, height: int, width: int) -> Path:
    """An RGB GeoTIFF tiled from a Massachusetts tile (mirrored at each repeat, so no hard seams)."""
    with Image.open(DATA / "massachusetts/images/10078660_15.jpg") as image:
        tile = np.moveaxis(np.asarray(image.convert("RGB")), -1, 0)
    pixels = np.pad(tile, ((0, 0), (0, max(0, height - 1500)), (0, max(0, width - 1500))), mode="symmetric")
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8", tiled=True,
                       crs="EPSG:32635", transform=from_origin(500_000, 6_710_000, 1.0, 1.0)) as dst:
        dst.write(pixels[:, :height, :width])
    return path


def real_model_parameters() -> tuple[int, dict[str, int]]:
    """Parameters of the default ``Sam3Config()``, instantiated on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        model = Sam3Model(Sam3Config())
    parts = {name: sum(p.numel() for p in part.parameters()) for name, part in model.named_children()}
    return sum(p.numel() for p in model.parameters()), parts


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--skip-full", action="store_true", help="skip running a model of the real size")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))))
        return
    cpu = cpu_info()
    peak_name, peak = machine_peak()
    print("bench_sam")
    print(f"  CPU: {cpu.describe()}; {platform.machine()}, {os.cpu_count()} CPU(s), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}; device {args.device}")
    print(f"  float32 peak of this CPU: {peak:.0f} GFLOP/s ({peak_name})")
    with tempfile.TemporaryDirectory(prefix="bench-sam-") as tmp:
        work = Path(tmp)
        model = save_tiny_sam3(work / "tiny")
        tiny = sum(p.numel() for p in Sam3Model.from_pretrained(model).parameters())
        print(f"\n2. folders, complete_dataset end to end; tiny SAM 3 of the tests ({tiny:,} parameters, random weights)")
        print("  dataset          image px     files  batch   images/s   RSS loaded   peak RSS   load s")
        for name, (missing, count) in FOLDERS.items():
            images, labels = copies(name, count, work / name)
            for batch in (1, 4):
                r = run_child({"kind": "folder", "missing": missing, "model": str(model), "batch": batch, "device": args.device,
                               "images": str(images), "labels": str(labels), "out": str(work / f"{name}-out{batch}")})
                with Image.open(next(images.iterdir())) as first:
                    size = "×".join(map(str, first.size))
                print(f"  {name:<15}  {size:>9}  {r['units']:>8}  {batch:>5}  {r['units'] / r['seconds']:>9.2f}"
                      f"  {_fmt_bytes(r['loaded']):>11}  {_fmt_bytes(r['peak']):>9}  {r['load']:>7.2f}  {r['note']}")

        print(f"\n3. georeferenced, complete_ortho: windows {WINDOW} px, overlap {OVERLAP} px, batch 4, same tiny model")
        print("  raster (h × w)   windows  windows/s  megapixels/s   RSS loaded   peak RSS")
        for height, width in ORTHO_SIZES:
            path = ortho(work / f"ortho-{height}.tif", height, width)
            r = run_child({"kind": "ortho", "missing": "buildings", "model": str(model), "batch": 4, "device": args.device,
                           "ortho": str(path), "out": str(work / f"mask-{height}.tif")})
            assert r["units"] == count_windows(height, width, WINDOW, OVERLAP)
            print(f"  {height:>5} × {width:<5}  {r['units']:>8}  {r['units'] / r['seconds']:>9.2f}"
                  f"  {height * width / 1e6 / r['seconds']:>12.2f}  {_fmt_bytes(r['loaded']):>11}  {_fmt_bytes(r['peak']):>9}"
                  f"  {r['note']}")

    total, parts = real_model_parameters()
    print(f"\n4. the real SAM 3: {total:,} parameters (the default Sam3Config() instantiated on the meta device: "
          + ", ".join(f"{name} {count / 1e6:.1f} M" for name, count in parts.items()) + ")")
    print(f"  weights alone: {_fmt_bytes(4 * total)} in float32, {_fmt_bytes(2 * total)} in bfloat16/float16; "
          f"input {WINDOW} × {WINDOW} px ({(WINDOW // 14) ** 2} patch tokens of 14 px)")
    if not args.skip_full:
        r = run_child({"kind": "full", "device": args.device})
        print(f"  a model of that size, random weights, one {WINDOW}² input on {args.device}: {r['flops'] / 1e12:.2f} TFLOP "
              f"(FlopCounterMode), {r['seconds']:.1f} s per image ({1 / r['seconds']:.3f} images/s), peak RSS "
              f"{_fmt_bytes(r['peak'])} {r['note']}")
        print(f"  lower bound at this CPU's peak: {r['flops'] / 1e9 / peak:.1f} s per image; a 1500 px Massachusetts tile is "
              "one input (resized), a georeferenced image one input per window")


if __name__ == "__main__":
    main()
