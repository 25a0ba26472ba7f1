"""Memory vs raster width: a 512 × 65,536 px mask rendered in strips (the default) and in one pass.

The render engine's blend buffer is a few hundred rows tall and as wide as what it renders at
once, so without strips its memory grows with the raster's width. Since ``RenderConfig.strip_px``
(8192 by default) wide rasters are rendered as vertical strips of that width. This script
renders the same synthetic street-grid mask (tiny 8-feature network: it measures the engine,
not the model) with strips of 2048 and 8192 px and in one pass (``strip_px`` = the width),
each in a fresh child process, and prints peak RSS, time and windows computed, and whether the
three outputs are identical.

Run: ``python benchmarks/bench_wide.py [--width 65536]`` (about a minute on 2 CPU cores; target:
peak RSS with the default strips ≤ 1.5 GB at any width, same pixels as one pass).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_render import MB, TARGET_RSS_GB, _fmt_bytes, compare, run_child, save_model, synthetic_mask

from satgen_geo.engine import RenderConfig
from satgen_geo.precision import cpu_info

HEIGHT = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=65536, help="mask width in px (a multiple of 256)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_wide_") as tmp:
        folder = Path(tmp)
        mask = synthetic_mask(folder / "wide.tif", HEIGHT, args.width)
        model, _ = save_model(8, folder / "unet-f8.safetensors")
        print(f"bench_wide on {cpu_info().describe()}: {HEIGHT} × {args.width:,} px mask, features-8 U-Net, "
              f"batch {args.batch}, deterministic, torch fp32")
        print(f"{'strip_px':>10} {'peak RSS':>9} {'seconds':>8} {'windows':>8}")
        outputs = {}
        for strip in (2048, RenderConfig.strip_px, args.width):
            out = folder / f"strip-{strip}.tif"
            job = {"kind": "ours", "label": f"strips of {strip}", "model": str(model), "mask": str(mask), "out": str(out),
                   "backend": "torch", "precision": "fp32", "deterministic": True, "batch_size": args.batch,
                   "strip_px": strip}
            r = run_child(job, 0.0, {})
            outputs[strip] = (out, r)
            label = f"{strip}" + (" (one pass)" if strip == args.width else "")
            print(f"{label:>21} {_fmt_bytes(r['peak']):>9} {r['seconds']:8.1f} {r['windows']:8,}  {r['note'].strip()}")
        one_pass = outputs[args.width][0]
        for strip, (out, _) in outputs.items():
            if strip != args.width:
                _, diff = compare(out, one_pass)
                print(f"strips of {strip} vs one pass: max |Δ| {diff} ({'identical' if diff == 0 else 'DIFFERENT'})")
        peak = outputs[RenderConfig.strip_px][1]["peak"]
        print(f"peak RSS with the default strips: {_fmt_bytes(peak)} (target ≤ {TARGET_RSS_GB} GB): "
              f"{'met' if peak <= TARGET_RSS_GB * 1024 * MB else 'MISSED'}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
