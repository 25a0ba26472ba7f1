"""Streaming render: mask GeoTIFF → windows → batched network → cosine blend → RGB GeoTIFF.

Memory stays flat whatever the raster size: the mask is read one lattice row of windows at
a time, outputs are accumulated into a rolling float32 buffer a few hundred rows tall, and
rows are written (in whole 256-row GeoTIFF blocks) as soon as no later window touches
them. Rasters wider than ``RenderConfig.strip_px`` are rendered as vertical strips of that
width, one after the other, each exactly like a ``region`` render, so the buffer's width is
bounded too. Reading the next band and writing finished rows run on an IO thread while the
network computes.

Randomness follows the original SatGen-CV inference (Gaussian input noise, inference-time
dropout, extra noise on empty windows) but every draw comes from a generator seeded by
the global seed and the window's position, so the same seed (and batch size) gives
bit-identical output and a sub-area (``region``) renders exactly the pixels of the same area
of a full render. (Different batch sizes may differ by one grey level in rare pixels: the
CPU convolution kernels split their work by batch shape.)
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.windows import Window

from satgen_geo._validate import check_int
from satgen_geo.errors import CRSError, InputFileError, LimitError, SatgenError
from satgen_geo.geotiff import BLOCK_PX, OSM_ATTRIBUTION, build_overviews, open_for_writing, open_raster, profile
from satgen_geo.grid import Grid
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.model.spec import ModelSpec
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.rasterize import BAND_NAMES
from satgen_geo.tiling import TileWindow, WindowPlan, count_windows, finished_rows, plan_windows, window_seed, window_weights

log = logging.getLogger(__name__)

RGB_NAMES = ("red", "green", "blue")
#: Dropout draws use a seed stream separate from the input-noise stream.
_DROPOUT_STREAM = 0x5A7
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


@dataclass(frozen=True)
class RenderConfig:
    """How the network is run over the mask.

    Parameters
    ----------
    seed
        Global seed; each window's randomness derives from it and the window position.
    deterministic
        No input noise and no dropout: the output depends on the mask alone.
    overlap_px
        Window overlap in pixels; ``None`` uses the model spec's (128 of 256 by default).
    batch_size
        Windows per network call (every call is padded to this size, see :class:`_Job`).
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (used when a checkpoint path is given).
    precision
        ``fp32``, or ``fp16``/``bf16`` autocast (CUDA only; ``auto`` picks fp16 on CUDA).
    input_noise_std
        Gaussian noise added to every window in [-1, 1] space (0.02, as in training).
    empty_noise_std, empty_variance
        Windows whose mask variance (in [0, 1] units) is below ``empty_variance`` get
        Gaussian noise of this std (in 0–255 units) first, as the original did.
    overviews, cog
        Build internal overviews; rewrite the result as a Cloud Optimized GeoTIFF.
    max_windows
        The most windows one render may compute (checked before any work by
        :func:`check_work`); raise it for larger jobs.
    max_batch_size
        The largest accepted ``batch_size`` (memory grows with it); raise it on a large GPU.
    strip_px
        Widest part of the raster blended at once (a multiple of 256). Wider rasters are
        rendered in vertical strips of this width, which bounds memory (0.9 GB peak for a
        512 × 65,536 px raster against 1.7 GB in one pass, ``benchmarks/bench_wide.py``) at
        the cost of computing the windows on each strip border twice (about
        ``tile_px / strip_px`` more work); the pixels are the same as in one pass.
    """

    seed: int = 0
    deterministic: bool = False
    overlap_px: int | None = None
    batch_size: int = 8
    device: str = "auto"
    precision: str = "auto"
    input_noise_std: float = 0.02
    empty_noise_std: float = 10.0
    empty_variance: float = 0.01
    overviews: bool = True
    cog: bool = False
    strip_px: int = 8192
    max_windows: int = 250_000
    max_batch_size: int = 64


def check_work(height: int, width: int, spec: ModelSpec, config: RenderConfig) -> int:
    """Check a render of a ``height`` × ``width`` px mask against the limits; return its window count.

    Runs in constant time before anything is read or allocated. The overlap must leave a
    stride of at least 1/8 window (``0 <= overlap_px <= tile_px * 7 // 8``, 224 px for the
    usual 256 px window), and the number of windows must not exceed ``config.max_windows``.

    Raises
    ------
    ConfigError
        On an overlap outside its range (``param="overlap_px"``).
    LimitError
        When the render needs more windows than ``config.max_windows`` (``param="max_windows"``).
    """
    overlap = spec.overlap_px if config.overlap_px is None else config.overlap_px
    check_int(overlap, "overlap_px", "window overlap (px)", minimum=0, maximum=max_overlap(spec.tile_px))
    windows = count_windows(height, width, spec.tile_px, overlap)
    if windows > config.max_windows:
        raise LimitError(
            f"a {width}×{height} px render at {overlap} px overlap needs {windows:,} windows, over the limit of "
            f"{config.max_windows:,} windows; use a smaller overlap or area, or raise the window limit",
            param="max_windows",
        )
    return windows


def max_overlap(tile_px: int) -> int:
    """The largest accepted window overlap for ``tile_px`` windows (a stride of 1/8 window)."""
    return tile_px - tile_px // 8


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render` wrote and how fast."""

    path: Path
    grid: Grid
    windows: int
    seconds: float
    device: str


def render(
    mask: str | Path,
    output: str | Path,
    model: LoadedModel,
    config: RenderConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    region: Window | None = None,
) -> RenderResult:
    """Render a two-band mask GeoTIFF into a georeferenced RGB GeoTIFF.

    Parameters
    ----------
    mask
        GeoTIFF with band 1 roads and band 2 buildings (0/255), as ``satgen mask`` writes.
    output
        RGB GeoTIFF to write (atomically) with the mask's CRS and transform.
    model
        From :func:`satgen_geo.model.loaded.load_model`.
    config
        Seed, overlap, batching, precision, output options.
    progress, cancel
        ``progress(done, total, "render")`` per batch; ``cancel()`` checked per batch.
    region
        Render only this pixel window of the mask; its pixels equal the same pixels of
        a full render.
    """
    config = config or RenderConfig()
    _keep_heap_mapped()
    if isinstance(config.batch_size, bool) or not isinstance(config.batch_size, int) or config.batch_size < 1:
        raise SatgenError(f"batch size {config.batch_size!r} must be a whole number of windows, at least 1")
    if isinstance(config.strip_px, bool) or not isinstance(config.strip_px, int) or config.strip_px < BLOCK_PX \
            or config.strip_px % BLOCK_PX:
        raise SatgenError(f"strip width {config.strip_px!r} must be a positive multiple of {BLOCK_PX} px")
    started = time.perf_counter()
    with open_raster(mask) as src:
        _check_mask(src, mask)
        overlap = model.spec.overlap_px if config.overlap_px is None else config.overlap_px
        plan = plan_windows(src.height, src.width, model.spec.tile_px, overlap)
        region = _check_region(region, src)
        grid = Grid(src.crs, src.window_transform(region), int(region.width), int(region.height))
        network = WindowNetwork(model, config)
        jobs = [_Job(src, plan, strip, network, strip.col_off - region.col_off) for strip in _strips(region, config.strip_px)]
        total = sum(job.total for job in jobs)
        tick = report(progress)
        tags = _tags(src, model, config)
        out_profile = profile(grid, 3, photometric="RGB")
        with open_for_writing(output, out_profile, RGB_NAMES, tags, cog=config.cog, overviews=config.overviews) as dst:
            dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            done = 0
            for job in jobs:
                job.run(dst, lambda d, _t, stage, before=done: tick(before + d, total, stage), cancel)
                done += job.total
            if config.overviews:
                build_overviews(dst)
    seconds = time.perf_counter() - started
    log.info("rendered %d windows in %.1f s (%.2f windows/s)", total, seconds, total / max(seconds, 1e-9))
    return RenderResult(Path(output), grid, total, seconds, str(model.device))


def _strips(region: Window, strip_px: int) -> list[Window]:
    """``region`` cut into vertical strips at most ``strip_px`` wide."""
    c0, width = int(region.col_off), int(region.width)
    return [Window(c0 + x, region.row_off, min(strip_px, width - x), region.height) for x in range(0, width, strip_px)]


@functools.cache
def _keep_heap_mapped() -> None:
    """Stop glibc from unmapping and re-faulting the network's activation buffers on every call.

    With glibc's defaults each forward pass maps its large activations fresh and returns
    them afterwards (about 117k page faults per batch of 8 at 64 features), which costs a
    quarter of the network's speed on CPU. Raising the mmap and trim thresholds keeps that
    memory in the heap for reuse; the process's resident size then stays at its peak.
    A no-op where glibc's ``mallopt`` is not available.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):
        log.debug("mallopt is not available; keeping the default allocator settings")


def _check_mask(src: rasterio.DatasetReader, path: str | Path) -> None:
    if src.count != 2 or src.dtypes[0] != "uint8":
        raise InputFileError(
            f"{path} has {src.count} band(s) of {src.dtypes[0]}; a mask needs 2 uint8 bands "
            "(1 = roads, 2 = buildings, 0/255): build one with 'satgen mask'"
        )
    if src.crs is None:
        raise CRSError(f"{path} has no CRS; rebuild it with 'satgen mask' or set one with gdal_edit.py -a_srs EPSG:<code>")
    if src.transform.b or src.transform.d:
        raise InputFileError(f"{path} is rotated; warp it north-up first (gdalwarp)")


def _check_region(region: Window | None, src: rasterio.DatasetReader) -> Window:
    full = Window(0, 0, src.width, src.height)
    if region is None:
        return full
    region = Window(int(region.col_off), int(region.row_off), int(region.width), int(region.height))
    inside = region.col_off >= 0 and region.row_off >= 0 and region.width > 0 and region.height > 0
    if not inside or region.col_off + region.width > src.width or region.row_off + region.height > src.height:
        raise SatgenError(f"region {region} is not inside the {src.width}×{src.height} px mask")
    return region


def _tags(src: rasterio.DatasetReader, model: LoadedModel, config: RenderConfig) -> dict[str, object]:
    source = src.tags()
    return {
        "CONTENT": "synthetic imagery generated by satgen-geo; not a photograph",
        "MODEL": model.spec.name,
        "MODEL_SHA256": model.sha256,
        "SEED": "none (deterministic)" if config.deterministic else config.seed,
        "SOURCE": source.get("SOURCE", "mask GeoTIFF"),
        "ATTRIBUTION": source.get("ATTRIBUTION", OSM_ATTRIBUTION),
    }


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Network output in [-1, 1] → uint8 0..255 (rounded, clipped)."""
    return np.clip(np.rint((rgb + 1.0) * 127.5), 0, 255).astype(np.uint8)


class WindowNetwork:
    """Turns uint8 mask windows into float RGB windows in [-1, 1], with seeded randomness.

    Call it with masks ``(N, 2, H, W)`` uint8 in mask band order (roads, buildings) and one
    seed per window; the model spec's channel order is applied here.
    """

    def __init__(self, model: LoadedModel, config: RenderConfig) -> None:
        self.model, self.config = model, config
        self.stochastic = not config.deterministic
        self.generator = model.generator
        self.device = model.device
        self.order = [BAND_NAMES.index(name) for name in model.spec.channel_order]
        self.autocast = _autocast_dtype(config.precision, self.device)
        self.generator.to(memory_format=torch.channels_last)

    def __call__(self, masks: np.ndarray, seeds: list[int]) -> np.ndarray:
        x = torch.from_numpy(masks[:, self.order]).float()
        dropout_seeds = None
        if self.stochastic:
            x = self._add_noise(x, seeds)
            dropout_seeds = [window_seed(s, _DROPOUT_STREAM, 0) for s in seeds]
        else:
            x = x / 127.5 - 1.0
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), _autocast(self.device, self.autocast):
            with self.model.lock:  # the dropout mode is model state: set it for this call only
                y = self.generator.set_mc_dropout(self.stochastic)(x, seeds=dropout_seeds)
        return y.float().contiguous().cpu().numpy()  # NCHW-contiguous: fast blending

    def _add_noise(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Empty-window noise (0–255 units), normalisation, input noise ([-1, 1] units)."""
        cfg = self.config
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        shape = x.shape[1:]
        empty = (x / 255.0).var(dim=(1, 2, 3), unbiased=False) < cfg.empty_variance
        for i in torch.nonzero(empty).flatten().tolist():
            x[i] = (x[i] + torch.randn(shape, generator=generators[i]) * cfg.empty_noise_std).clamp_(0, 255)
        noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
        return (x / 127.5 - 1.0 + noise * cfg.input_noise_std).clamp_(-1.0, 1.0)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    choices = {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}
    if precision not in choices:
        raise SatgenError(f"precision {precision!r} is not one of auto, fp32, fp16, bf16")
    return choices[precision] if device.type == "cuda" else None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


class _Job:
    """One render: windows in row-major order, fixed-size batches, a rolling blend buffer, an IO thread.

    Every network call gets exactly ``batch_size`` windows (the last one padded with empty
    windows whose outputs are dropped): the convolution kernels then see the same batch
    shape everywhere, so a window's pixels do not depend on which windows share its batch
    and a ``region`` render equals the same area of a full render bit for bit. The output
    goes to ``dst`` from column ``dst_col`` on (a strip of a wider render).
    """

    def __init__(
        self, src: rasterio.DatasetReader, plan: WindowPlan, region: Window, network: WindowNetwork, dst_col: int = 0
    ) -> None:
        self.src, self.plan, self.network, self.dst_col = src, plan, network, dst_col
        self.r0, self.c0 = int(region.row_off), int(region.col_off)
        self.height, self.width = int(region.height), int(region.width)
        tile = plan.tile_px
        self.rows = [r for r, o in enumerate(plan.row_offsets) if o < self.r0 + self.height and o + tile > self.r0]
        self.cols = [c for c, o in enumerate(plan.col_offsets) if o < self.c0 + self.width and o + tile > self.c0]
        self.total = len(self.rows) * len(self.cols)
        # copy only a real per-dataset mask (the AOI); a nodata value of 0 would mark background as invalid
        self.has_mask = any(MaskFlags.per_dataset in flags for flags in src.mask_flag_enums)
        # rows not yet written: < 1 block of final rows, plus the lattice rows one batch can span
        spanned = -(-network.config.batch_size // len(self.cols)) + 1
        self.buffer_shape = (3, BLOCK_PX + spanned * plan.stride + tile, self.width)
        self.buffer = np.empty((3, 0, 0), dtype=np.float32)  # allocated by run(), freed after it
        self.buffer_row = 0  # region row held in buffer[:, 0]

    def run(self, dst: rasterio.io.DatasetWriter, tick: ProgressFn, cancel: CancelFn | None) -> None:
        """Render every window into ``dst``."""
        self.buffer = np.zeros(self.buffer_shape, dtype=np.float32)
        try:
            self._run(dst, tick, cancel)
        finally:
            self.buffer = np.empty((3, 0, 0), dtype=np.float32)

    def _run(self, dst: rasterio.io.DatasetWriter, tick: ProgressFn, cancel: CancelFn | None) -> None:
        size = self.network.config.batch_size
        done = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="satgen-io") as io:
            writes: list[Future] = []
            batch: list[tuple[TileWindow, np.ndarray]] = []
            for item in self._windows(io):
                batch.append(item)
                if len(batch) == size or done + len(batch) == self.total:
                    check_cancel(cancel)
                    self._process(batch, size)
                    done += len(batch)
                    tick(done, self.total, "render")
                    writes += [io.submit(self._write, dst, *chunk) for chunk in self._flush(batch[-1][0], done == self.total)]
                    batch = []
            for write in writes:  # surfaces any write error
                write.result()

    def _windows(self, io: ThreadPoolExecutor) -> Iterator[tuple[TileWindow, np.ndarray]]:
        """Every window with its mask, row-major; the next band is read while this one computes."""
        tile = self.plan.tile_px
        col_start = self.plan.col_offsets[self.cols[0]]
        pending = io.submit(self._read_band, self.rows[0])
        for i, lattice_row in enumerate(self.rows):
            band = pending.result()
            if i + 1 < len(self.rows):
                pending = io.submit(self._read_band, self.rows[i + 1])
            for col in self.cols:
                window = self.plan.window(lattice_row, col)
                x = window.col_off - col_start
                yield window, band[:, :, x : x + tile]

    def _read_band(self, lattice_row: int) -> np.ndarray:
        """The mask under one lattice row of windows, zero-padded beyond the raster (2, tile, span)."""
        tile, plan = self.plan.tile_px, self.plan
        row_off = plan.row_offsets[lattice_row]
        col_start = plan.col_offsets[self.cols[0]]
        span = plan.col_offsets[self.cols[-1]] + tile - col_start
        band = np.zeros((2, tile, span), dtype=np.uint8)
        r0, r1 = max(row_off, 0), min(row_off + tile, plan.height)
        c0, c1 = max(col_start, 0), min(col_start + span, plan.width)
        data = self.src.read(window=Window(c0, r0, c1 - c0, r1 - r0))
        band[:, r0 - row_off : r1 - row_off, c0 - col_start : c1 - col_start] = data
        return band

    def _process(self, batch: list[tuple[TileWindow, np.ndarray]], size: int) -> None:
        """Run one batch, padded to ``size`` windows, and accumulate the real windows' outputs."""
        windows = [w for w, _ in batch]
        masks = np.zeros((size, *batch[0][1].shape), dtype=np.uint8)
        masks[: len(batch)] = [m for _, m in batch]
        seeds = [window_seed(self.network.config.seed, w.row_off, w.col_off) for w in windows]
        outputs = self.network(masks, seeds + [0] * (size - len(batch)))
        for window, rgb in zip(windows, outputs):
            self._accumulate(window, rgb)

    def _accumulate(self, window: TileWindow, rgb: np.ndarray) -> None:
        """Add ``rgb * weights`` of one window to the part of the buffer inside the region."""
        weights = window_weights(window, self.plan)
        r0 = max(window.row_off, self.r0, 0)
        r1 = min(window.row_off + window.size, self.r0 + self.height)
        c0 = max(window.col_off, self.c0, 0)
        c1 = min(window.col_off + window.size, self.c0 + self.width)
        tr, tc = slice(r0 - window.row_off, r1 - window.row_off), slice(c0 - window.col_off, c1 - window.col_off)
        br = slice(r0 - self.r0 - self.buffer_row, r1 - self.r0 - self.buffer_row)
        self.buffer[:, br, c0 - self.c0 : c1 - self.c0] += rgb[:, tr, tc] * weights[tr, tc]

    def _flush(self, last_window: TileWindow, everything: bool) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(region_row, uint8 rows)`` for whole blocks of final rows (all of them at the end)."""
        position = self.rows.index(last_window.row)
        complete = last_window.row if last_window.col == self.cols[-1] else (self.rows[position - 1] if position else -1)
        final = self.height if everything else min(max(finished_rows(self.plan, complete) - self.r0, 0), self.height)
        while final - self.buffer_row >= BLOCK_PX or (everything and final > self.buffer_row):
            n = min(BLOCK_PX, final - self.buffer_row)
            rows = to_uint8(self.buffer[:, :n])
            self.buffer[:, :-n] = self.buffer[:, n:].copy()
            self.buffer[:, -n:] = 0.0
            yield self.buffer_row, rows
            self.buffer_row += n

    def _write(self, dst: rasterio.io.DatasetWriter, row: int, rgb: np.ndarray) -> None:
        window = Window(self.dst_col, row, self.width, rgb.shape[1])
        dst.write(rgb, window=window)
        if self.has_mask:
            src_window = Window(self.c0, self.r0 + row, self.width, rgb.shape[1])
            dst.write_mask(self.src.dataset_mask(window=src_window), window=window)
