"""GPU benchmark: the original SatGen-CV inference (batch 1, fp32) against ours at fp32 and fp16, on one GPU.

All three run the same U-Net (64 features, random weights, torch seed 1234) over the same
synthetic street-grid mask (``--size`` px square, 1 m/px, tile 256, overlap 128) on ``cuda``,
in this one process, each timed once after a warm-up (a small mask for the original, whose
batch shape never changes; the same mask for ours):

1. the original project's ``SeamlessGenerator`` from ``../shared/peers/satgen-cv``, as-is
   (``device="cuda"``, one window per network call, its defaults otherwise: dropout and
   input noise on), on the mask held in memory, output kept in memory;
2. ours, ``RenderConfig(backend="torch", precision="fp32")``, the whole call timed (reads the
   mask GeoTIFF, writes the RGB GeoTIFF without overviews), batch size from free memory;
3. ours with the default ``precision="auto"`` (fp16 autocast on CUDA), likewise.

Prints windows/s and each one's ratio to the original; the target is ours (auto) ≥ 20× the
original's windows/s. Run by ``benchmarks/gpu_check.sh`` (``python benchmarks/bench_gpu.py``
works wherever CUDA torch and satgen-geo's dependencies are installed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

from satgen_geo.engine import RenderConfig, render
from satgen_geo.model.checkpoint import save_generator
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.loaded import load_model
from satgen_geo.model.spec import ModelSpec
from satgen_geo.tiling import plan_windows

ROOT = Path(__file__).resolve().parents[1]
#: The original code: ``$SATGEN_PEER`` (a copy carried to a GPU machine, DEVELOPERS.md) or ../shared beside the repo.
PEER = Path(os.environ.get("SATGEN_PEER") or ROOT.parent / "shared" / "peers" / "satgen-cv")
TILE, OVERLAP, TARGET = 256, 128, 20.0


def street_grid(size: int) -> np.ndarray:
    """A (2, size, size) uint8 mask: roads every 96 px, houses between them."""
    mask = np.zeros((2, size, size), dtype=np.uint8)
    for offset in range(40, size, 96):
        mask[0, offset : offset + 8, :] = 255
        mask[0, :, offset : offset + 8] = 255
    for y in range(60, size - 30, 48):
        for x in range(60, size - 30, 48):
            if (x // 48 + y // 48) % 3:
                mask[1, y : y + 20, x : x + 24] = 255
    return mask


def write_mask(path: Path, mask: np.ndarray) -> Path:
    profile = {"driver": "GTiff", "width": mask.shape[2], "height": mask.shape[1], "count": 2, "dtype": "uint8",
               "crs": "EPSG:32635", "transform": from_origin(500000, 6700000, 1, 1), "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(mask)
    return path


def original(checkpoint: Path, mask: np.ndarray) -> float:
    """Windows/s of the original SeamlessGenerator on ``mask`` (2, H, W), batch 1 fp32 on cuda."""
    sys.path.insert(0, str(PEER))
    from safetensors.torch import load_file
    from src.inference import SeamlessGenerator
    from src.models import Generator

    model = Generator(features=64)
    model.load_state_dict(load_file(str(checkpoint)), strict=True)
    generator = SeamlessGenerator(model.to("cuda"), patch_size=TILE, overlap=OVERLAP, device="cuda")
    image = np.ascontiguousarray(mask.transpose(1, 2, 0))
    generator.generate(image[:512, :512])  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    generator.generate(image)
    torch.cuda.synchronize()
    windows = len(plan_windows(mask.shape[1], mask.shape[2], TILE, OVERLAP))
    return windows / (time.perf_counter() - start)


def ours(checkpoint: Path, mask_path: Path, out: Path, precision: str) -> tuple[float, str]:
    model = load_model(checkpoint, "cuda")
    config = RenderConfig(backend="torch", precision=precision, overviews=False)
    render(mask_path, out, model, config)  # warm-up at the same batch shape (cuDNN picks its kernels)
    torch.cuda.synchronize()
    result = render(mask_path, out, model, config)
    return result.windows / result.seconds, f"{result.precision}, batch {result.batch_size}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="mask side in px (default 4096: 961 windows)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device visible to torch; run it on a GPU machine (benchmarks/gpu_check.sh)")
    print(f"bench_gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"mask {args.size}², tile {TILE}, overlap {OVERLAP}, U-Net 64 features", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(1234)
        checkpoint = save_generator(UNetGenerator(features=64), ModelSpec(features=64), folder / "g64.safetensors")
        mask = street_grid(args.size)
        mask_path = write_mask(folder / "mask.tif", mask)
        rows = [("original SeamlessGenerator (batch 1, fp32)", original(checkpoint, mask), "fp32, batch 1")]
        for precision in ("fp32", "auto"):
            rate, how = ours(checkpoint, mask_path, folder / "out.tif", precision)
            rows.append((f"ours, precision {precision}", rate, how))
    base = rows[0][1]
    for name, rate, how in rows:
        print(f"  {name:44s} {rate:9.1f} windows/s  ×{rate / base:6.2f}  ({how})")
    ratio = rows[-1][1] / base
    print(f"  target ours (auto) ≥ {TARGET:g}× the original: ×{ratio:.1f} {'met' if ratio >= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
