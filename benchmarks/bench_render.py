"""Render benchmark: our engine at its default settings against the peers, each backend and precision, on equal terms.

Measured in one run, every render (and every bare-network timing) in a fresh child process, so each
peak RSS (``ru_maxrss``) is that child's own:

1. the machine: CPU model and instruction-set flags, library versions, threads; the float32 peak of
   this CPU (best of a 2048³ matmul and a 3×3 256→256 conv) and the generator's FLOPs per window;
2. the one-time calibration of ``backend="auto"``/``precision="auto"`` (:mod:`satgen_geo.precision`),
   in a warm-up child: its time (graph conversion included) and its choice. All children share one
   temporary ``SATGEN_CACHE_DIR``, so the timed renders reuse that decision and the converted graphs:
   the one-time cost is excluded from their times and printed here;
3. the bare network (no IO, no blending: :func:`satgen_geo.backends.open_runner`) at batch 8 on 8
   real windows of the mask, dropout masks as inputs (the default stochastic graph): torch fp32,
   torch bf16, OpenVINO fp32, OpenVINO bf16 (bf16 only where the CPU has native bf16), ONNX Runtime
   fp32; windows/s (mean of the timed calls after one warm-up call), ratio to torch fp32, and the PSNR
   of each output against torch fp32's; then torch fp32 and bf16 in the NCHW layout against the
   channels-last layout torch runs in;
4. renders of a real 2048 × 2048 px mask (the top-left 2048² of the bundled Kotka extract) with the
   same U-Net (features 64, random init, torch seed 1234, saved once as .safetensors), tile 256,
   overlap 128; each child loads the model and runs one warm-up forward at its own batch shape, then
   the timed part reads the mask, renders and writes a GeoTIFF (same profile: tiled, deflate):

   * **original** — the original project's ``SeamlessGenerator`` (``src/inference/blending.py`` of
     SatGen-CV, run as-is from ``../shared/peers/satgen-cv``) with its own ``Generator`` loading our
     state dict (strict): ``patch_size=256, overlap=128, device="cpu"``, its defaults otherwise
     (test-time dropout, input noise and empty-window noise on, batch 1), default malloc. Its
     ``generate`` takes the mask as (H, W, C) uint8 in our model spec's channel order (roads,
     buildings); it reads with rasterio and writes a GeoTIFF instead of its tifffile/PNG, so the IO
     is comparable;
   * **toolbelt** — pytorch-toolbelt's ``ImageSlicer``/``TileMerger`` (``weight="pyramid"``, its
     seam-hiding weights) at batch 8, the same network in eval mode (no dropout, no noise), our
     normalisation (x/127.5 − 1), NCHW, ``torch.inference_mode``; once with glibc's default malloc,
     once with the allocator setting ours runs with (``MALLOC_MMAP_THRESHOLD_``/
     ``MALLOC_TRIM_THRESHOLD_``, the values :func:`satgen_geo.runtime.tune_allocator` sets);
   * **ours default** — ``render(..., RenderConfig())``: backend auto, precision auto, stochastic,
     batch auto (8 on a CPU); the child applies :func:`~satgen_geo.runtime.tune_allocator` as the
     ``satgen`` CLI and server do at start-up. It also builds overviews, which the peers do not;
   * **ours fp32** — the same with ``backend="torch", precision="fp32"`` (the reference pixels);

5. pixels: PSNR (uint8, peak 255) of ours default against ours fp32 (same seed), and, for
   information, of the peers against ours fp32: the original's randomness differs from ours
   (global RNG), so it is also run deterministic (no dropout, no noise) against ours fp32
   deterministic for a pixel check; toolbelt is deterministic (eval) and is compared the same way.
   The original truncates to uint8 where we round and its cosine fade starts at exactly 0, so its
   raster's first row and column are black: that comparison is repeated without them;
6. engine overhead: ours default end-to-end windows/s against the bare network of the fastest
   accurate (≥ 45 dB) backend at the same batch, with a breakdown: padding of the last batch (225
   windows → 232 computed at batch 8), and from a second, instrumented render in the same child
   (the network's runner timed per call) the network forward, the seeded noise and dropout masks,
   and the rest (reading, blending, writing and overview waits); plus each stage's time run alone;
7. memory: ours default with a tiny network (features 8: it measures the engine's buffers, not the
   model) at 2048² (the real mask), 8192² and 16384² (synthetic street-grid masks written block by block);
   the original's 16384² peak is extrapolated from its whole-raster arrays.

Targets (printed as met/MISSED): ours default ≥ 2.5× the original as-is; ≥ 1.5× toolbelt with the
allocator setting; ours default's output ≥ 45 dB PSNR against ours torch fp32's; end-to-end ≥ 90 %
of the fastest accurate bare network's windows/s; peak RSS ≤ 1.5 GB at 2048² and 16384² and flat in
raster size (16384² within 15 % of 8192², same model: from 8192 px on, the engine renders in strips
of that width, so its buffers stop growing there).

Measurement notes. Children are started through ``sh`` so that their ``ru_maxrss`` is their own (a
fork+exec child inherits the parent's peak). Before each timed child the script waits
(``--max-wait``) for other processes to leave the CPUs idle, and flags timings during which they did
not (NOISY).

Run: ``python benchmarks/bench_render.py`` (about 6 minutes on 2 idle CPU cores; ``--skip-large``
skips the 8192² and 16384² renders, ``--quick`` is a smoke run: 512² to 2048² masks, features 8,
targets not meaningful).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window

import satgen_geo.engine
from satgen_geo.backends import Pending, open_runner
from satgen_geo.blend import BlendBuffer, to_uint8
from satgen_geo.convert import backend_version
from satgen_geo.engine import RGB_NAMES, RenderConfig, read_band, render, requested_batch
from satgen_geo.geotiff import BLOCK_PX, build_overviews, open_for_writing, profile
from satgen_geo.grid import Grid
from satgen_geo.mask import MaskSource, build_mask
from satgen_geo.model.checkpoint import count_parameters, save_generator
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.model.spec import ModelSpec
from satgen_geo.network import WindowNetwork, inference_view
from satgen_geo.precision import MIN_PSNR_DB, cpu_info, psnr
from satgen_geo.rasterize import BAND_NAMES
from satgen_geo.runtime import tune_allocator
from satgen_geo.tiling import plan_windows

ROOT = Path(__file__).resolve().parents[1]
OSM = ROOT / "sample_aoi" / "kotka-suburb.osm.pbf"
PEER = ROOT.parent / "shared" / "peers" / "satgen-cv"
TILE, OVERLAP, BATCH = 256, 128, 8
MODEL_SEED = 1234
#: (small, middle, large) mask sizes in px and the main model's features, full run and --quick. The middle size
#: is the engine's strip width (RenderConfig.strip_px), where its buffers reach their full size: flatness is
#: the large render's peak against the middle one's.
SIZES = {"full": (2048, 8192, 16384, 64), "quick": (512, 1024, 2048, 8)}
TARGET_ORIGINAL, TARGET_TOOLBELT, TARGET_OVERHEAD, TARGET_RSS_GB, TARGET_FLAT = 2.5, 1.5, 0.9, 1.5, 1.15
#: glibc's environment form of what tune_allocator sets with mallopt (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)
MALLOC_KEEP = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str((1 << 31) - 1)}
NOISY_CORES = 0.15  # other processes' CPU use above which a timing is flagged
BARE_CALLS = 4  # timed bare-network calls after the warm-up call
MB = 1024 * 1024


# --------------------------------------------------------------------------- memory helpers


def _peak_rss_bytes() -> int:
    """Peak RSS of this process (``ru_maxrss`` is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _fmt_bytes(n: float) -> str:
    return f"{n / MB / 1024:.2f} GB" if n >= 1024 * MB else f"{n / MB:.0f} MB"


# --------------------------------------------------------------------------- CPU contention


def _cpu_busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``, all CPUs)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of its finished (waited-for) descendants."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Contention:
    """How many CPU cores *other* processes kept busy while a measurement ran."""

    def __enter__(self) -> Contention:
        self.wall, self.busy, self.own = time.perf_counter(), _cpu_busy_seconds(), _own_cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall
        others = (_cpu_busy_seconds() - self.busy) - (_own_cpu_seconds() - self.own)
        self.cores = max(others, 0.0) / max(wall, 1e-9)

    def note(self) -> str:
        return f"[others {self.cores:.2f} cores{' NOISY' if self.cores > NOISY_CORES else ''}]"


def wait_quiet(max_wait: float, label: str) -> None:
    """Before a timed part: wait (up to ``max_wait`` s) until other processes use < NOISY_CORES cores."""
    start = time.perf_counter()
    while max_wait > 0:
        with Contention() as c:
            time.sleep(1.0)
        if c.cores < NOISY_CORES:
            waited = time.perf_counter() - start
            if waited > 1.5:
                print(f"  (waited {waited:.0f} s for other processes to go quiet before {label})", flush=True)
            return
        if time.perf_counter() - start > max_wait:
            print(f"  (other processes keep {c.cores:.2f} cores busy; timing {label} anyway after {max_wait:.0f} s)", flush=True)
            return


# --------------------------------------------------------------------------- children


def _mask_hwc(path: Path, spec: ModelSpec) -> tuple[np.ndarray, Grid]:
    """The whole mask as (H, W, C) uint8 in ``spec``'s channel order, and its grid (the peers' input)."""
    with rasterio.open(path) as src:
        data = src.read([BAND_NAMES.index(name) + 1 for name in spec.channel_order])
        grid = Grid(src.crs, src.transform, src.width, src.height)
    return np.ascontiguousarray(data.transpose(1, 2, 0)), grid


def _write_rgb(path: Path, rgb_hwc: np.ndarray, grid: Grid) -> None:
    """A peer's result as a GeoTIFF with our profile (tiled, deflate; no overviews)."""
    with rasterio.open(path, "w", **profile(grid, 3, photometric="RGB")) as dst:
        dst.write(rgb_hwc.transpose(2, 0, 1))


def _load_file(name: str, path: Path) -> object:
    """Import one module file by path (pytorch-toolbelt's package __init__ imports torchvision, not installed)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toolbelt_tiles() -> Path:
    found = importlib.util.find_spec("pytorch_toolbelt")
    if found is None or not found.submodule_search_locations:
        raise SystemExit("pytorch-toolbelt is not installed: pip install --no-deps pytorch-toolbelt")
    return Path(found.submodule_search_locations[0]) / "inference" / "tiles.py"


def setup_original(job: dict) -> tuple[object, dict]:
    """The original's Generator with our weights, wrapped in its SeamlessGenerator; warmed up at batch 1."""
    sys.path.insert(0, job["peer"])
    from safetensors.torch import load_file
    from src.inference import SeamlessGenerator
    from src.models import Generator

    torch.manual_seed(0)  # its noise and dropout draw from the global RNGs
    np.random.seed(0)
    model = Generator(in_channels=2, out_channels=3, features=job["features"])
    model.load_state_dict(load_file(job["model"]), strict=True)
    if job["deterministic"]:
        seamless = SeamlessGenerator(model, patch_size=TILE, overlap=OVERLAP, device="cpu", noise_strategy=None,
                                     enable_dropout=False, input_noise_std=0.0)
    else:
        seamless = SeamlessGenerator(model, patch_size=TILE, overlap=OVERLAP, device="cpu")
    with torch.no_grad():
        model(torch.zeros(1, 2, TILE, TILE))
    return seamless, {"batch": 1}


def run_original(seamless: object, job: dict) -> int:
    mask, grid = _mask_hwc(Path(job["mask"]), ModelSpec(features=job["features"]))
    rgb = seamless.generate(mask)  # type: ignore[attr-defined]
    _write_rgb(Path(job["out"]), rgb, grid)
    return len(plan_windows(grid.height, grid.width, TILE, OVERLAP))


def setup_toolbelt(job: dict) -> tuple[tuple[object, LoadedModel], dict]:
    tiles = _load_file("toolbelt_tiles", Path(job["toolbelt"]))
    loaded = load_model(job["model"], "cpu")
    loaded.generator.set_mc_dropout(False)  # eval()
    with torch.inference_mode():
        loaded.generator(torch.zeros(BATCH, 2, TILE, TILE))
    return (tiles, loaded), {"batch": BATCH}


def run_toolbelt(state: tuple[object, LoadedModel], job: dict) -> int:
    """pytorch-toolbelt's documented tiled inference: split, batches of 8, TileMerger, crop."""
    tiles, loaded = state
    mask, grid = _mask_hwc(Path(job["mask"]), loaded.spec)
    slicer = tiles.ImageSlicer(mask.shape, tile_size=TILE, tile_step=TILE - OVERLAP, weight="pyramid")  # type: ignore[attr-defined]
    merger = tiles.TileMerger(slicer.target_shape, 3, slicer.weight)  # type: ignore[attr-defined]
    parts = [torch.from_numpy(t).permute(2, 0, 1) for t in slicer.split(mask)]
    with torch.inference_mode():
        for i in range(0, len(parts), BATCH):
            x = torch.stack(parts[i : i + BATCH]).float() / 127.5 - 1.0
            merger.integrate_batch(loaded.generator(x), slicer.crops[i : i + BATCH])
        merged = np.moveaxis(merger.merge().numpy(), 0, -1)
    _write_rgb(Path(job["out"]), to_uint8(slicer.crop_to_orignal_size(merged)), grid)
    return len(parts)


def _ours_config(job: dict) -> RenderConfig:
    """The job's settings; ``batch_size`` and ``strip_px`` are optional (bench_wide sets them)."""
    return RenderConfig(backend=job["backend"], precision=job["precision"], deterministic=job["deterministic"],
                        batch_size=job.get("batch_size"), strip_px=job.get("strip_px", RenderConfig.strip_px))


def _ours_batch(loaded: LoadedModel, config: RenderConfig, mask: Path) -> int:
    """The effective batch size render() will use (the engine's rule)."""
    with rasterio.open(mask) as src:
        windows = len(plan_windows(src.height, src.width, loaded.spec.tile_px, loaded.spec.overlap_px))
    return min(requested_batch(loaded, config), windows)


def setup_ours(job: dict) -> tuple[LoadedModel, dict]:
    """Load the model and warm our network up at the render's batch shape (backend opened, one call)."""
    tune_allocator()  # as the satgen CLI and server do at start-up (the library itself never does)
    loaded = load_model(job["model"], "cpu")
    config = _ours_config(job)
    batch = _ours_batch(loaded, config, Path(job["mask"]))
    network = WindowNetwork(loaded, config, batch)
    network(np.zeros((batch, 2, TILE, TILE), np.uint8), list(range(batch)))
    return loaded, {"batch": batch, "reason": network.choice.reason}


def run_ours(loaded: LoadedModel, job: dict) -> dict:
    result = render(job["mask"], job["out"], loaded, _ours_config(job))
    return {"windows": result.windows, "backend": result.backend, "precision": result.precision, "batch": result.batch_size}


class _TimedNetwork(WindowNetwork):
    """WindowNetwork that times its setup, its calls and its runner's calls (the breakdown's instrumented render)."""

    totals = {"setup": 0.0, "calls": 0.0, "forward": 0.0, "computed": 0}

    def __init__(self, *args: object, **kwargs: object) -> None:
        start = time.perf_counter()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.totals["setup"] += time.perf_counter() - start
        launch = self.runner.start

        def timed(x: torch.Tensor, masks: object) -> Pending:
            tick = time.perf_counter()
            out = launch(x, masks)  # type: ignore[arg-type]  # on a CPU the whole call runs here
            self.totals["forward"] += time.perf_counter() - tick
            self.totals["computed"] += x.shape[0]
            return out

        self.runner.start = timed  # type: ignore[method-assign]

    def start(self, masks: np.ndarray, seeds: list[int]) -> Pending:
        tick = time.perf_counter()
        out = super().start(masks, seeds)  # on a CPU the call runs here, whole
        self.totals["calls"] += time.perf_counter() - tick
        return out


def breakdown(loaded: LoadedModel, job: dict) -> dict:
    """An instrumented second render, then each stage alone: read, blend, write, overviews (seconds)."""
    satgen_geo.engine.WindowNetwork = _TimedNetwork  # this child is disposable
    out = Path(job["out"]).with_suffix(".instrumented.tif")
    start = time.perf_counter()
    render(job["mask"], out, loaded, _ours_config(job))
    parts: dict[str, float] = {"total": time.perf_counter() - start, **_TimedNetwork.totals}
    with rasterio.open(job["mask"]) as src:
        plan = plan_windows(src.height, src.width, TILE, OVERLAP)
        grid = Grid(src.crs, src.transform, src.width, src.height)
        tick = time.perf_counter()
        for row in range(plan.rows):
            read_band(src, plan, row, range(plan.cols))
        parts["read"] = time.perf_counter() - tick
    rgb = np.random.default_rng(0).uniform(-1, 1, (3, TILE, TILE)).astype(np.float32)
    tick = time.perf_counter()
    blend = BlendBuffer(plan, 0, 0, plan.height, plan.width, job["batch"], BLOCK_PX)
    windows, rows = list(plan), []
    for i in range(0, len(windows), job["batch"]):
        for window in windows[i : i + job["batch"]]:
            blend.add(window, rgb)
        rows += blend.pop(windows[min(i + job["batch"], len(windows)) - 1])
    parts["blend"] = time.perf_counter() - tick
    with open_for_writing(out, profile(grid, 3, photometric="RGB"), RGB_NAMES, {}, overviews=False) as dst:
        tick = time.perf_counter()
        for row, block in rows:
            dst.write(block, window=Window(0, row, plan.width, block.shape[1]))
        parts["write"] = time.perf_counter() - tick
        tick = time.perf_counter()
        build_overviews(dst)
        parts["overviews"] = time.perf_counter() - tick
    out.unlink(missing_ok=True)
    return parts


def calibrate(job: dict) -> dict:
    """The one-time cost of backend/precision auto: what the first render on this machine and model pays."""
    tune_allocator()
    loaded = load_model(job["model"], "cpu")
    config = RenderConfig()
    batch = _ours_batch(loaded, config, Path(job["mask"]))
    start = time.perf_counter()
    network = WindowNetwork(loaded, config, batch)
    return {"seconds": time.perf_counter() - start, "backend": network.choice.backend,
            "precision": network.choice.precision, "reason": network.choice.reason, "batch": batch}


def bare(job: dict) -> dict:
    """The bare network on one backend/precision: windows/s on the given real windows; its output saved for PSNR."""
    tune_allocator()
    loaded = load_model(job["model"], "cpu")
    view = inference_view(loaded.generator, stochastic=True)
    windows = np.load(job["windows"])
    start = time.perf_counter()
    runner = open_runner(view, loaded.sha256, loaded.device, job["backend"], job["precision"], windows.shape)
    if job.get("nchw"):  # torch in the plain NCHW layout instead of channels-last: inputs and weights
        runner.memory_format = torch.contiguous_format  # type: ignore[attr-defined]
        for weights in runner.view.parameters():  # type: ignore[attr-defined]
            weights.data = weights.data.contiguous()
    opened = time.perf_counter() - start
    x = torch.from_numpy(windows).float() / 127.5 - 1.0
    masks = view.dropout_masks(range(len(windows)), TILE, TILE)
    out = runner(x, masks)
    tick = time.perf_counter()
    for _ in range(BARE_CALLS):
        runner(x, masks)
    seconds = time.perf_counter() - tick
    np.save(job["out"], out)
    return {"rate": BARE_CALLS * len(windows) / seconds, "opened": opened}


RENDERERS = {"original": (setup_original, run_original), "toolbelt": (setup_toolbelt, run_toolbelt),
             "ours": (setup_ours, run_ours)}


def child(job: dict) -> dict:
    """One measurement in this fresh process."""
    logging.getLogger("satgen_geo").setLevel(logging.ERROR)
    if job["kind"] == "calibrate":
        return calibrate(job)
    if job["kind"] == "bare":
        return bare(job)
    setup, run = RENDERERS[job["kind"]]
    start = time.perf_counter()
    state, info = setup(job)
    info["setup"] = time.perf_counter() - start
    info["peak_setup"] = _peak_rss_bytes()
    start = time.perf_counter()
    windows = run(state, job)
    info["seconds"] = time.perf_counter() - start
    info.update(windows if isinstance(windows, dict) else {"windows": windows})
    info["peak"] = _peak_rss_bytes()
    info["threads"] = torch.get_num_threads()
    if job.get("breakdown"):
        info["parts"] = breakdown(state, {**job, "batch": info["batch"]})
    return info


class ChildFailed(RuntimeError):
    """A measured child process exited without a result."""


def run_child(job: dict, max_wait: float, env: dict[str, str]) -> dict:
    """Run ``job`` in a fresh Python started through ``sh`` (see below); returns its result plus contention."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    # A process started by fork+exec inherits, in ru_maxrss, the peak RSS of the image it replaced, i.e. of
    # this (big) parent. The shell forks python from its own small image instead, so the child's
    # ru_maxrss is its own ("; exit $?" keeps the shell from exec-ing python in its place).
    cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd]
    label = job.get("label", job["kind"])
    wait_quiet(max_wait, label)
    with Contention() as contention:
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:] or ["(no output)"]
        raise ChildFailed(f"{label} failed (exit {proc.returncode}): " + " | ".join(tail))
    result = json.loads(lines[-1][len("RESULT "):])
    result["contention"] = contention.cores
    result["note"] = contention.note()
    return result


# --------------------------------------------------------------------------- inputs


def save_model(features: int, path: Path) -> tuple[Path, int]:
    torch.manual_seed(MODEL_SEED)
    model = UNetGenerator(features=features)
    save_generator(model, ModelSpec(features=features, tile_px=TILE, overlap_px=OVERLAP), path)
    return path, count_parameters(model)


def real_mask(folder: Path, size: int) -> Path:
    """The bundled extract's mask, top-left ``size`` × ``size`` px, same CRS and transform."""
    full = folder / "kotka-full.tif"
    build_mask(full, MaskSource(osm=OSM))
    crop = folder / f"mask-{size}.tif"
    with rasterio.open(full) as src:
        if src.width < size or src.height < size:
            raise SystemExit(f"{OSM.name} gives only {src.width}×{src.height} px, need {size}²")
        window = Window(0, 0, size, size)
        data = src.read(window=window)
        prof = profile(Grid(src.crs, src.window_transform(window), size, size), 2)
        tags, full_size = src.tags(), (src.width, src.height)
    with rasterio.open(crop, "w", **prof) as dst:
        dst.write(data)
        dst.update_tags(**tags)
    print(f"  real mask: {OSM.name} → {full_size[0]}×{full_size[1]} px, cropped to the top-left {size}² "
          f"(roads {(data[0] > 0).mean():.1%}, buildings {(data[1] > 0).mean():.1%} of pixels)")
    return crop


def synthetic_mask(path: Path, size: int, width: int | None = None, rows_per_write: int = 512) -> Path:
    """A ``size`` (tall) × ``width`` (default ``size``) street grid + houses mask, written block by block."""
    cell = 80  # m = px: a street every 80 px (6 px wide), a primary every 800 px (12 px wide)
    house_rows = [(12, 24), (28, 40), (44, 56), (60, 72)]  # 12 px tall houses
    house_cols = [(15, 25), (35, 45), (55, 65)]  # 10 px wide
    width = width or size

    def lines(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        axis = np.arange(n)
        pos = axis % cell
        road = (pos < 6) | ((axis % (10 * cell)) < 12)
        house = [np.zeros(n, bool), np.zeros(n, bool)]
        for k, spans in enumerate((house_rows, house_cols)):
            for a, b in spans:
                house[k] |= (pos >= a) & (pos < b)
        return road, house[0], house[1], (axis // cell).astype(np.int32)

    road_r, hr, _, block_r = lines(size)
    road_c, _, hc, block_c = lines(width)
    prof = profile(Grid(rasterio.CRS.from_epsg(32635), from_origin(500_000.0, 6_800_000.0, 1.0, 1.0), width, size), 2)
    with rasterio.open(path, "w", **prof) as dst:
        for r0 in range(0, size, rows_per_write):
            r = slice(r0, min(r0 + rows_per_write, size))
            park = ((block_r[r][:, None] * 31 + block_c[None, :] * 17) % 7) == 0  # every 7th block: no houses
            roads = road_r[r][:, None] | road_c[None, :]
            houses = hr[r][:, None] & hc[None, :] & ~park & ~roads
            dst.write(np.stack([roads, houses]).astype(np.uint8) * 255, window=Window(0, r0, width, r.stop - r0))
    return path


def real_windows(mask: Path, spec: ModelSpec, path: Path) -> Path:
    """BATCH windows of the mask spread over its lattice, (N, C, tile, tile) uint8 in the spec's channel order."""
    data, _ = _mask_hwc(mask, spec)
    plan = plan_windows(data.shape[0], data.shape[1], TILE, OVERLAP)
    picks = [plan[int(i)] for i in np.linspace(0, len(plan) - 1, BATCH)]
    np.save(path, np.stack([data[w.row_off : w.row_off + TILE, w.col_off : w.col_off + TILE].transpose(2, 0, 1)
                            for w in picks]))
    return path


# --------------------------------------------------------------------------- throughput


def _best_time(fn, reps: int) -> float:
    fn()
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def machine_peak() -> tuple[str, float]:
    """Best float32 GFLOP/s of a 2048³ matmul and a 3×3 256→256 conv at 64×64, batch 8, channels_last."""
    torch.manual_seed(0)
    with torch.inference_mode():
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        matmul = 2 * 2048**3 / _best_time(lambda: a @ b, 5) / 1e9
        x, w = torch.randn(8, 256, 64, 64), torch.randn(256, 256, 3, 3)
        flops = _flops(lambda: torch.nn.functional.conv2d(x, w, padding=1))
        x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
        conv = flops / _best_time(lambda: torch.nn.functional.conv2d(x, w, padding=1), 4) / 1e9
    return max((f"matmul 2048³ {matmul:.0f}", matmul), (f"conv3×3 256² b8 {conv:.0f}", conv), key=lambda kv: kv[1])


def window_gflop(features: int) -> float:
    """Generator FLOPs (convolutions, FlopCounterMode) per TILE² window, in GFLOP."""
    model = UNetGenerator(features=features).eval()
    with torch.inference_mode():
        return _flops(lambda: model(torch.zeros(1, 2, TILE, TILE))) / 1e9


# --------------------------------------------------------------------------- main


def compare(a: Path, b: Path, skip: int = 0) -> tuple[float, int]:
    """PSNR (dB, uint8 peak 255) of raster ``a`` against ``b`` and the largest |Δ|, the first ``skip`` rows/columns left out."""
    with rasterio.open(a) as fa, rasterio.open(b) as fb:
        if (fa.crs, fa.transform, fa.shape) != (fb.crs, fb.transform, fb.shape):
            raise SystemExit(f"{a.name} and {b.name} differ in CRS, transform or size")
        x, y = fa.read()[:, skip:, skip:], fb.read()[:, skip:, skip:]
    return psnr(x, y, peak=255.0), int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max())


def best_of(best: dict, new: dict) -> dict:
    """Keep the faster of two repetitions (and the larger peak RSS)."""
    keep = dict(new if not best or new["seconds"] < best["seconds"] else best)
    keep["peak"] = max(new["peak"], best.get("peak", 0))
    return keep


def rate(r: dict) -> float:
    return r["windows"] / r["seconds"]


def _db(value: float) -> str:
    return "identical" if math.isinf(value) else f"{value:.1f} dB"


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def original_arrays(size: int, windows: int) -> int:
    """Bytes of the original's whole-raster arrays at ``size``²: window list, float64 sums and quotient, the mask."""
    return windows * TILE * TILE * 3 + size * size * (3 * 8 * 2 + 8 + 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 512² and 2048² masks, features 8")
    parser.add_argument("--skip-large", action="store_true", help="skip the 8192² and 16384² memory renders")
    parser.add_argument("--max-wait", type=float, default=45.0,
                        help="seconds to wait, before each timed child, for other processes to leave the CPUs idle")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of the timed renders (interleaved; fastest kept)")
    parser.add_argument("--peer", type=Path, default=PEER, help="checkout of the original SatGen-CV project")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return

    t_total = time.perf_counter()
    logging.getLogger("satgen_geo").setLevel(logging.ERROR)  # mask-repair warnings of the sample extract
    small, middle, large, features = SIZES["quick" if args.quick else "full"]
    if not (args.peer / "src" / "inference" / "blending.py").is_file():
        raise SystemExit(f"the original project is not at {args.peer}: pass --peer <checkout of SatGen-CV>")
    tiles_py = toolbelt_tiles()
    cpu = cpu_info()
    versions = ", ".join(f"{name} {backend_version(name)}" for name in ("openvino", "onnxruntime"))
    print(f"bench_render{' --quick (smoke run: targets not meaningful)' if args.quick else ''}")
    print(f"  CPU: {cpu.describe()}; native bf16: {'yes' if cpu.native_bf16 else 'no'}")
    print(f"  {platform.machine()}, {os.cpu_count()} CPU(s), torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{versions}, numpy {np.__version__}, rasterio {rasterio.__version__}")
    print(f"  threads: torch {torch.get_num_threads()} (ONNX Runtime the same), OpenVINO its own pool; "
          f"{len(os.sched_getaffinity(0))} cores usable")
    print(f"  tile {TILE}, overlap {OVERLAP}; every measurement in a fresh process; timings flagged NOISY when other")
    print(f"  processes kept > {NOISY_CORES} cores busy meanwhile\n")
    with tempfile.TemporaryDirectory(prefix="bench_render_") as tmp:
        folder = Path(tmp)
        env = {"SATGEN_CACHE_DIR": str(folder / "cache")}  # one cache (calibration, converted graphs) for all children

        def go(job: dict, extra_env: dict[str, str] | None = None) -> dict:
            return run_child(job, args.max_wait, {**env, **(extra_env or {})})

        # ---- inputs (untimed)
        print("inputs")
        mask_small = real_mask(folder, small)
        model_main, params_main = save_model(features, folder / f"unet-f{features}.safetensors")
        model8, _ = save_model(8, folder / "unet-f8.safetensors")
        print(f"  models: features {features} ({params_main:,} params) and features 8, random init, torch seed {MODEL_SEED}")
        windows_npy = real_windows(mask_small, ModelSpec(features=features), folder / "windows.npy")
        mask_middle = mask_large = None
        if not args.skip_large:
            t = time.perf_counter()
            mask_middle = synthetic_mask(folder / f"mask-{middle}.tif", middle)
            mask_large = synthetic_mask(folder / f"mask-{large}.tif", large)
            print(f"  synthetic masks {middle}² and {large}² (street grid + houses): written blockwise in "
                  f"{time.perf_counter() - t:.1f} s")
        print(f"  original project: {args.peer}; pytorch-toolbelt: {tiles_py}\n", flush=True)

        # ---- machine peak and FLOPs (in this process, before any child)
        wait_quiet(args.max_wait, "the peak measurement")
        with Contention() as c_peak:
            peak_name, peak = machine_peak()
        gflop = window_gflop(features)
        print(f"machine float32 peak {peak:.0f} GFLOP/s ({peak_name.split()[0]}) {c_peak.note()}; generator "
              f"{gflop:.2f} GFLOP per {TILE}² window (features {features})\n")

        # ---- 2: the one-time calibration
        print("calibration of backend/precision auto (one-time per machine and model; excluded from the timed renders)")
        cal = go({"kind": "calibrate", "model": str(model_main), "mask": str(mask_small)})
        print(f"  {cal['seconds']:.1f} s (graph conversion included) → {cal['backend']} {cal['precision']} at batch "
              f"{cal['batch']}: {cal['reason']}")
        cal8 = go({"kind": "calibrate", "model": str(model8), "mask": str(mask_small)}) if features != 8 else cal
        if features != 8:
            print(f"  features 8 (memory runs): {cal8['seconds']:.1f} s → {cal8['backend']} {cal8['precision']}")
        print()

        # ---- 3: bare network per backend and precision
        print(f"bare network, batch {BATCH}, {BATCH} real windows, dropout masks as inputs; {BARE_CALLS} timed calls after "
              "one warm-up (no IO, no blending, no noise)")
        pairs = [("torch", "fp32"), ("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16"), ("onnxruntime", "fp32")]
        bare_rows: dict[tuple[str, str], dict] = {}
        for backend, precision in pairs:
            name = f"{backend} {precision}"
            if precision == "bf16" and not cpu.native_bf16:
                print(f"  {name:18s} skipped: no native bf16")
                continue
            out = folder / f"bare-{backend}-{precision}.npy"
            try:
                row = go({"kind": "bare", "label": f"bare {name}", "model": str(model_main), "windows": str(windows_npy),
                          "backend": backend, "precision": precision, "out": str(out)})
            except ChildFailed as err:
                print(f"  {name:18s} FAILED — {err}")
                continue
            row["psnr"] = psnr(np.load(out), np.load(folder / "bare-torch-fp32.npy"))
            bare_rows[(backend, precision)] = row
            ratio = row["rate"] / bare_rows[("torch", "fp32")]["rate"]
            print(f"  {name:18s} {row['rate']:7.2f} windows/s  ×{ratio:4.2f}  {_db(row['psnr']):>9s} vs torch fp32  "
                  f"{row['rate'] * gflop:6.0f} GFLOP/s ({row['rate'] * gflop / peak:4.0%} of fp32 peak)  "
                  f"open {row['opened']:.1f} s  {row['note']}", flush=True)
        for precision in [p for p in ("fp32", "bf16") if ("torch", p) in bare_rows]:  # the layout, measured
            try:
                row = go({"kind": "bare", "label": f"bare torch {precision} NCHW", "model": str(model_main),
                          "windows": str(windows_npy), "backend": "torch", "precision": precision, "nchw": True,
                          "out": str(folder / f"bare-torch-{precision}-nchw.npy")})
            except ChildFailed as err:
                print(f"  torch {precision} NCHW FAILED — {err}")
                continue
            ratio = row["rate"] / bare_rows[("torch", precision)]["rate"]
            print(f"  {'torch ' + precision + ' NCHW':18s} {row['rate']:7.2f} windows/s  ×{ratio:4.2f} of channels-last "
                  f"(the layout torch runs in)  {row['note']}", flush=True)
        accurate = {k: v for k, v in bare_rows.items() if v["psnr"] >= MIN_PSNR_DB}
        fastest = max(accurate, key=lambda k: accurate[k]["rate"])
        print(f"  fastest accurate (≥ {MIN_PSNR_DB:.0f} dB): {' '.join(fastest)} {accurate[fastest]['rate']:.2f} windows/s\n")

        # ---- 4: renders
        print(f"renders at {small}² (features {features}): setup (load + one warm-up forward; ours: also the backend's "
              "compile) untimed,\n  then the timed read → render → write")
        renders = [
            ("original as-is", {"kind": "original", "deterministic": False}, {}),
            ("toolbelt", {"kind": "toolbelt"}, {}),
            ("toolbelt + alloc", {"kind": "toolbelt"}, MALLOC_KEEP),
            ("ours default", {"kind": "ours", "backend": "auto", "precision": "auto", "deterministic": False}, {}),
            ("ours torch fp32", {"kind": "ours", "backend": "torch", "precision": "fp32", "deterministic": False}, {}),
        ]
        common = {"model": str(model_main), "mask": str(mask_small), "features": features, "peer": str(args.peer),
                  "toolbelt": str(tiles_py)}
        results: dict[str, dict] = {}

        def tif(label: str) -> Path:
            return folder / (label.replace(" ", "-").replace("+", "").replace(".", "") + ".tif")

        for rep in range(args.reps):
            for label, job, extra in renders:
                job = {**common, **job, "label": label, "out": str(tif(label)), "breakdown": label == "ours default" and rep == 0}
                r = go(job, extra)
                if "parts" in r:
                    parts = r["parts"]
                results[label] = best_of(results.get(label, {}), r)
                chosen = f"  {r['backend']} {r['precision']}" if "backend" in r else ""
                print(f"  {label:16s} {r['seconds']:6.1f} s  {rate(r):7.2f} windows/s  batch {r['batch']:2d}  peak RSS "
                      f"{_fmt_bytes(r['peak']):>8s}  setup {r['setup']:4.1f} s{chosen}  {r['note']}", flush=True)
        ours_reason = results["ours default"]["reason"]
        print(f"  ours default's choice: {ours_reason}")
        if "cached calibration" not in ours_reason:
            print("  WARNING: ours default calibrated in its own child (the cached decision was not reused)")

        print("  deterministic runs for the pixel check (no dropout, no noise; timed too, for information)")
        checks = [
            ("original determ.", {"kind": "original", "deterministic": True}),
            ("ours fp32 determ.", {"kind": "ours", "backend": "torch", "precision": "fp32", "deterministic": True}),
        ]
        for label, job in checks:
            r = go({**common, **job, "label": label, "out": str(tif(label))})
            results[label] = r
            print(f"  {label:16s} {r['seconds']:6.1f} s  {rate(r):7.2f} windows/s  batch {r['batch']:2d}  peak RSS "
                  f"{_fmt_bytes(r['peak']):>8s}  {r['note']}", flush=True)

        # ---- 5: pixels
        print("pixels (uint8 RGB, PSNR with peak 255)")
        pixel_rows = [
            ("ours default vs ours torch fp32 (same seed)", "ours default", "ours torch fp32"),
            ("original as-is vs ours torch fp32 (different randomness: information only)", "original as-is", "ours torch fp32"),
            ("original deterministic vs ours fp32 deterministic", "original determ.", "ours fp32 determ."),
            ("toolbelt (eval) vs ours fp32 deterministic", "toolbelt", "ours fp32 determ."),
        ]
        pixels = {}
        for text, a, b in pixel_rows:
            pixels[a] = compare(tif(a), tif(b))
            print(f"  {text:75s} {_db(pixels[a][0]):>9s}, max |Δ| {pixels[a][1]}")
        db, worst = compare(tif("original determ."), tif("ours fp32 determ."), skip=1)
        print(f"  {'  the same without its black first row and column':75s} {_db(db):>9s}, max |Δ| {worst}")
        print("  (the original truncates to uint8 where we round; toolbelt blends with other weights)\n")

        # ---- 6: engine overhead
        ours = results["ours default"]
        key = (ours["backend"], ours["precision"])
        bare_best = accurate[fastest]["rate"]
        n, b = ours["windows"], ours["batch"]
        computed = -(-n // b) * b
        e2e = rate(ours)
        print(f"engine overhead (ours default: {' '.join(key)}, batch {b})")
        print(f"  end-to-end {n} windows in {ours['seconds']:.2f} s = {e2e:.2f} windows/s = {e2e / bare_best:.0%} of the "
              f"fastest accurate bare network ({' '.join(fastest)}, {bare_best:.2f} windows/s)")
        if key in bare_rows and key != fastest:
            print(f"  the chosen {' '.join(key)} runs {bare_rows[key]['rate']:.2f} windows/s bare: the choice costs "
                  f"{1 - bare_rows[key]['rate'] / bare_best:.0%}")
        ideal = n / bare_best
        print(f"  bare network for {n} windows {ideal:.2f} s; padding of the last batch ({n} → {computed} computed) "
              f"+{(computed - n) / bare_best:.2f} s; everything else {ours['seconds'] - computed / bare_best:+.2f} s")
        print(f"  instrumented second render {parts['total']:.2f} s: setup (inference view + backend) {parts['setup']:.2f} s, "
              f"network forward {parts['forward']:.2f} s ({parts['computed']} windows, "
              f"{parts['computed'] / parts['forward']:.2f} windows/s), noise + dropout masks "
              f"{parts['calls'] - parts['forward']:.2f} s, the rest (read/blend/write waits, overviews) "
              f"{parts['total'] - parts['setup'] - parts['calls']:.2f} s")
        print(f"  each stage run alone: read {parts['read']:.2f} s, blend {parts['blend']:.2f} s, write "
              f"{parts['write']:.2f} s, overviews {parts['overviews']:.2f} s (reads and writes overlap the network "
              "on the IO thread)\n")

        # ---- 7: memory
        memory: dict[int, dict] = {}
        print(f"memory: ours default, features 8 ({cal8['backend']} {cal8['precision']} from its cached calibration)")
        for size, mask in ((small, mask_small), (middle, mask_middle), (large, mask_large)):
            if mask is None:
                continue
            out = folder / f"ours-f8-{size}.tif"
            try:
                r = go({"kind": "ours", "label": f"ours f8 {size}²", "model": str(model8), "mask": str(mask),
                        "out": str(out), "backend": "auto", "precision": "auto", "deterministic": False})
            except ChildFailed as err:
                print(f"  {size}²: FAILED — {err}")
                continue
            memory[size] = r
            print(f"  {size:5d}² {r['seconds']:6.1f} s  {r['windows']:6,} windows  {rate(r):7.2f} windows/s  peak RSS "
                  f"{_fmt_bytes(r['peak'])} (after setup {_fmt_bytes(r['peak_setup'])})  {r['note']}", flush=True)
            out.unlink(missing_ok=True)
        original = results["original as-is"]
        n_small, n_large = len(plan_windows(small, small, TILE, OVERLAP)), len(plan_windows(large, large, TILE, OVERLAP))
        extrapolated = original["peak"] + original_arrays(large, n_large) - original_arrays(small, n_small)
        print(f"  original as-is at {large}² (features {features}): ≈ {_fmt_bytes(extrapolated)} (its {small}² peak "
              f"{_fmt_bytes(original['peak'])} + the growth of its whole-raster arrays)\n")

        # ---- summary
        print(f"summary at {small}² (features {features})" + " " * 20 + "windows/s  ×original  ×toolbelt+alloc  peak RSS")
        base, tb = rate(results["original as-is"]), rate(results["toolbelt + alloc"])
        for label, _, _ in renders:
            r = results[label]
            print(f"  {label:40s} {rate(r):9.2f}  {rate(r) / base:9.2f}  {rate(r) / tb:15.2f}  {_fmt_bytes(r['peak']):>8s}")
        print("targets")
        ratio = e2e / base
        print(f"  ours default / original as-is: ×{ratio:.2f} (≥ {TARGET_ORIGINAL}): {_verdict(ratio >= TARGET_ORIGINAL)}")
        ratio = e2e / tb
        print(f"  ours default / toolbelt + allocator setting: ×{ratio:.2f} (≥ {TARGET_TOOLBELT}): "
              f"{_verdict(ratio >= TARGET_TOOLBELT)}")
        db = pixels["ours default"][0]
        print(f"  ours default vs ours torch fp32: {_db(db)} (≥ {MIN_PSNR_DB:.0f} dB): {_verdict(db >= MIN_PSNR_DB)}")
        share = e2e / bare_best
        print(f"  engine overhead: end-to-end {share:.0%} of the fastest accurate bare network (≥ {TARGET_OVERHEAD:.0%}): "
              f"{_verdict(share >= TARGET_OVERHEAD)}")
        peaks = {f"{small}² f{features}": ours["peak"], **{f"{s}² f8": r["peak"] for s, r in memory.items()}}
        worst = max(peaks.values())
        print(f"  peak RSS ours default ({', '.join(f'{k} {_fmt_bytes(v)}' for k, v in peaks.items())}) ≤ {TARGET_RSS_GB} GB: "
              f"{_verdict(worst <= TARGET_RSS_GB * 1024 * MB)}")
        if middle in memory and large in memory:
            growth = memory[large]["peak"] / memory[middle]["peak"]
            print(f"  flat in raster size: {large}² / {middle}² peak (features 8; both in full {middle} px strips) "
                  f"×{growth:.2f} (≤ {TARGET_FLAT}): {_verdict(growth <= TARGET_FLAT)}")
        else:
            print(f"  flat in raster size: not measured (no {large}² result: skipped or failed)")
        noisy = [r for r in [*results.values(), *bare_rows.values(), *memory.values()] if r["contention"] > NOISY_CORES]
        if noisy or c_peak.cores > NOISY_CORES:
            print("  WARNING: other processes used the CPUs during some timings (NOISY above); rerun on an idle machine")
    print(f"total benchmark time {time.perf_counter() - t_total:.0f} s")


if __name__ == "__main__":
    main()
