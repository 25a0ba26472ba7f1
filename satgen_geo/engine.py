"""Streaming render: mask GeoTIFF → windows → batched network → cosine blend → RGB GeoTIFF.

Memory stays flat whatever the raster size: the mask is read one lattice row of windows at
a time (:func:`read_band`), the network (:class:`~satgen_geo.network.WindowNetwork`) runs on
batches of windows, and its outputs are blended in a rolling buffer a few hundred rows tall
(:class:`~satgen_geo.blend.BlendBuffer`) whose finished rows are written in whole 256-row
GeoTIFF blocks as soon as no later window touches them. Rasters wider than
``RenderConfig.strip_px`` are rendered as vertical strips of that width, one after the
other, each exactly like a ``region`` render, so the buffer's width is bounded too. Reading
the next band and writing finished rows run on an IO thread while the network computes.
Every limit (:func:`check_work`) is checked before anything is allocated or written.

Identical pixels
    Every window's randomness comes from generators seeded by the global seed and the
    window's position in the whole mask, and every network call gets exactly the
    *effective batch size* ``min(batch_size, windows of the whole mask)`` windows (the last
    call padded with empty windows whose outputs are dropped). So two renders of the same
    mask with the same model, settings, seed and effective batch size give bit-identical
    pixels, whatever their ``region`` and ``strip_px``: a part of the mask renders exactly
    the pixels of the same part of a full render. Two different effective batch sizes may
    differ by one grey level in rare pixels (convolution kernels may split their work by
    batch shape, as the CPU ones do with more than one thread); any ``batch_size`` at or
    above the mask's window count means the same effective batch size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import CRSError as RasterioCRSError
from rasterio.windows import Window

from satgen_geo._atomic import check_distinct
from satgen_geo._validate import check_choice, check_int, check_number
from satgen_geo.backends import BACKENDS, PRECISIONS, PREVIEW_PRECISIONS, auto_batch_size
from satgen_geo.blend import BlendBuffer, to_uint8
from satgen_geo.errors import ConfigError, CRSError, InputFileError, LimitError
from satgen_geo.geotiff import (
    BLOCK_PX,
    OSM_ATTRIBUTION,
    build_overviews,
    open_for_writing,
    open_raster,
    profile,
)
from satgen_geo.grid import Grid
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.model.spec import ModelSpec
from satgen_geo.network import Pending, WindowNetwork
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.tiling import (
    TileWindow,
    WindowPlan,
    band_rows,
    count_windows,
    max_overlap,
    plan_windows,
    window_seed,
)

__all__ = [
    "GSD_TOLERANCE", "RenderConfig", "RenderResult", "WindowNetwork", "check_work", "max_overlap", "read_band",
    "render", "requested_batch", "resolve", "to_uint8",
]

log = logging.getLogger(__name__)

RGB_NAMES = ("red", "green", "blue")
#: A mask whose pixel size differs from the model's ``gsd_m`` by more than this fraction
#: (either way) renders with a warning: the model has not seen features at that scale.
GSD_TOLERANCE = 0.25
#: The seeds ``torch.manual_seed`` accepts.
_SEED_RANGE = (-(1 << 63), (1 << 64) - 1)


@dataclass(frozen=True)
class RenderConfig:
    """How the network is run over the mask; checked when it is made.

    Parameters
    ----------
    seed
        Global seed; each window's randomness derives from it and the window position.
    deterministic
        No input noise and no dropout: the output depends on the mask alone.
    overlap_px
        Window overlap in pixels, at least 0; ``None`` uses the model spec's (128 of 256 by
        default). The upper bound, ``tile_px * 7 // 8`` (224 px for 256 px windows), is
        checked by :func:`check_work` against the model.
    batch_size
        Windows per network call, 1 to ``max_batch_size``; ``None``: 8 on a CPU, on a GPU as
        many as half its free memory holds (:func:`satgen_geo.backends.auto_batch_size`). The
        render uses the *effective* batch size ``min(batch_size, windows of the whole mask)``
        and pads every call to it; the same seed, effective batch size, backend and
        precision give bit-identical pixels (module docstring).
    backend
        ``torch``, ``openvino`` or ``onnxruntime`` (the last two are extras), or ``auto``:
        torch on a GPU, the fastest installed one on a CPU (:mod:`satgen_geo.precision`).
    precision
        ``fp32`` (exact), ``bf16`` (CPU or CUDA), ``fp16`` (CUDA), ``int8`` (an OpenVINO
        preview, only when asked for), or ``auto``: fp16 on CUDA, on a CPU bf16 where the CPU
        has native bf16 and a calibration shows it faster with at least 45 dB PSNR from fp32,
        else fp32 (:mod:`satgen_geo.precision`).
    input_noise_std
        Gaussian noise (≥ 0) added to every window in [-1, 1] space (0.02, as in training).
    empty_noise_std, empty_variance
        Windows whose mask variance (in [0, 1] units) is below ``empty_variance`` get
        Gaussian noise of this std (in 0–255 units, ≥ 0) first, as the original did.
    overviews, cog
        Build internal overviews; rewrite the result as a Cloud Optimized GeoTIFF.
    strip_px
        Widest part of the raster blended at once (a positive multiple of 256). Wider
        rasters are rendered in vertical strips of this width, which bounds memory (0.9 GB
        peak for a 512 × 65,536 px raster against 1.7 GB in one pass,
        ``benchmarks/bench_wide.py``) at the cost of computing the windows on each strip
        border twice (about ``tile_px / strip_px`` more work); the pixels are the same.
    max_windows
        The most windows one render may compute (checked before any work by
        :func:`check_work`); raise it for larger jobs.
    max_batch_size
        The largest accepted ``batch_size`` (memory grows with it); raise it on a large GPU.
    """

    seed: int = 0
    deterministic: bool = False
    overlap_px: int | None = None
    batch_size: int | None = None
    backend: str = "auto"
    precision: str = "auto"
    input_noise_std: float = 0.02
    empty_noise_std: float = 10.0
    empty_variance: float = 0.01
    overviews: bool = True
    cog: bool = False
    strip_px: int = 8192
    max_windows: int = 250_000
    max_batch_size: int = 64

    def __post_init__(self) -> None:
        check_int(self.seed, "seed", "seed", minimum=_SEED_RANGE[0], maximum=_SEED_RANGE[1])
        if self.overlap_px is not None:
            check_int(self.overlap_px, "overlap_px", "window overlap (px)", minimum=0)
        check_int(self.max_batch_size, "max_batch_size", "batch size limit")
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", "batch size")
        if self.batch_size is not None and self.batch_size > self.max_batch_size:
            raise LimitError(
                f"batch size {self.batch_size} is over the limit of {self.max_batch_size} windows per network call "
                "(memory grows with it); use a smaller batch size or raise the batch size limit",
                param="batch_size",
            )
        check_choice(self.backend, "backend", "backend", BACKENDS)
        check_choice(self.precision, "precision", "precision", PRECISIONS)
        for name in ("input_noise_std", "empty_noise_std", "empty_variance"):
            check_number(getattr(self, name), name, name.replace("_", " "))
        check_int(self.strip_px, "strip_px", "strip width (px)", minimum=BLOCK_PX, multiple_of=BLOCK_PX)
        check_int(self.max_windows, "max_windows", "window limit")


def check_work(height: int, width: int, spec: ModelSpec, config: RenderConfig, region: Window | None = None) -> int:
    """Check a render of a ``height`` × ``width`` px mask against the limits; return its window count.

    Runs before anything is read or allocated, in time proportional to the number of
    strips. The overlap must leave a stride of at least 1/8 window
    (``0 <= overlap_px <= tile_px * 7 // 8``, 224 px for the usual 256 px window), and the
    windows the render computes (those touching ``region``, default the whole mask, strip by
    strip: :attr:`RenderResult.windows`) must not exceed ``config.max_windows``.

    Raises
    ------
    ConfigError
        On an overlap outside its range (``param="overlap_px"``).
    LimitError
        When the render needs more windows than ``config.max_windows`` (``param="max_windows"``).
    """
    overlap = spec.overlap_px if config.overlap_px is None else config.overlap_px
    check_int(overlap, "overlap_px", "window overlap (px)", minimum=0, maximum=max_overlap(spec.tile_px))
    region = region or Window(0, 0, width, height)
    windows = sum(
        count_windows(height, width, spec.tile_px, overlap, (int(s.row_off), int(s.col_off), int(s.height), int(s.width)))
        for s in _strips(region, config.strip_px)
    )
    if windows > config.max_windows:
        raise LimitError(
            f"a {int(region.width)}×{int(region.height)} px render at {overlap} px overlap needs {windows:,} windows, "
            f"over the limit of {config.max_windows:,} windows; use a smaller overlap or area, or raise the window limit",
            param="max_windows",
        )
    return windows


def requested_batch(model: LoadedModel, config: RenderConfig) -> int:
    """``config.batch_size``, or the automatic one for the model's device; the render caps it at the mask's windows."""
    return config.batch_size or auto_batch_size(model.device, model.spec, config.max_batch_size)


def resolve(model: LoadedModel, config: RenderConfig) -> RenderConfig:
    """``config`` with ``auto`` backend and precision replaced by what a render of ``model`` would use.

    For work split over processes (region chunks): each part then runs the same backend and
    precision, whatever its own calibration would say. Calibrates (once per machine) if needed.
    """
    choice = WindowNetwork(model, config, requested_batch(model, config)).choice
    return replace(config, backend=choice.backend, precision=choice.precision)


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render` wrote and how fast; ``batch_size``, ``backend`` and ``precision`` are those used."""

    path: Path
    grid: Grid
    windows: int
    seconds: float
    device: str
    batch_size: int
    backend: str
    precision: str


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
        GeoTIFF with band 1 roads and band 2 buildings (0/255) in a projected CRS, as
        ``satgen mask`` writes. A pixel size more than :data:`GSD_TOLERANCE` away from the
        model's ``gsd_m`` is logged as a warning.
    output
        RGB GeoTIFF to write (atomically) with the mask's CRS and transform.
    model
        From :func:`satgen_geo.model.loaded.load_model`; it is not changed.
    config
        Seed, overlap, batching, precision, output options and limits.
    progress, cancel
        ``progress(done, total, "render")`` per batch; ``cancel()`` checked per batch.
    region
        Render only this pixel window of the mask; its pixels equal the same pixels of
        a full render.
    """
    config = config or RenderConfig()
    started = time.perf_counter()
    check_distinct(output, "output", {"mask": mask})
    with open_raster(mask, "mask") as src:
        _check_mask(src, mask)
        region = _check_region(region, src)
        total = check_work(src.height, src.width, model.spec, config, region)
        _check_pixel_size(src, model.spec, mask)
        overlap = model.spec.overlap_px if config.overlap_px is None else config.overlap_px
        plan = plan_windows(src.height, src.width, model.spec.tile_px, overlap)
        grid = Grid(src.crs, src.window_transform(region), int(region.width), int(region.height))
        batch = min(requested_batch(model, config), len(plan))
        network = WindowNetwork(model, config, batch)
        renderer = _Renderer(src, plan, network, batch, config.seed)
        tick = report(progress)
        out_profile = profile(grid, 3, photometric="RGB")
        tags = _tags(src, model, network, seed="none (deterministic)" if config.deterministic else config.seed,
                     overlap=overlap)
        with open_for_writing(output, out_profile, RGB_NAMES, tags, cog=config.cog, overviews=config.overviews) as dst:
            dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            done = 0
            for area in _strips(region, config.strip_px):
                done += renderer.run(area, int(area.col_off - region.col_off), dst, _shifted(tick, done, total), cancel)
            if config.overviews:
                build_overviews(dst)
    seconds = time.perf_counter() - started
    log.info("rendered %d windows in %.1f s (%.2f windows/s)", total, seconds, total / max(seconds, 1e-9))
    return RenderResult(Path(output), grid, total, seconds, str(model.device), batch, network.choice.backend,
                        network.choice.precision)


def _shifted(tick: ProgressFn, before: int, total: int) -> ProgressFn:
    """A strip's progress as progress of the whole render, of which ``before`` windows were done before it."""
    return lambda done, _strip_total, stage: tick(before + done, total, stage)


def _strips(region: Window, strip_px: int) -> Iterator[Window]:
    """``region`` cut into vertical strips at most ``strip_px`` wide, left to right."""
    c0, width = int(region.col_off), int(region.width)
    for x in range(0, width, strip_px):
        yield Window(c0 + x, int(region.row_off), min(strip_px, width - x), int(region.height))


def _check_mask(src: rasterio.DatasetReader, path: str | Path) -> None:
    if src.count != 2 or src.dtypes[0] != "uint8":
        raise InputFileError(
            f"{path} has {src.count} band(s) of {src.dtypes[0]}; a mask needs 2 uint8 bands "
            "(1 = roads, 2 = buildings, 0/255): build one with 'satgen mask'", param="mask",
        )
    if src.crs is None:
        raise CRSError(
            f"{path} has no CRS; rebuild it with 'satgen mask' or set one with gdal_edit.py -a_srs EPSG:<code>",
            param="mask",
        )
    if src.crs.is_geographic:
        raise CRSError(
            f"{path} is in {src.crs.to_string()}, a geographic CRS with pixels in degrees; the model needs metric "
            "pixels: rebuild the mask with 'satgen mask' or warp it to a projected CRS such as a UTM zone (gdalwarp)",
            param="mask",
        )
    if src.transform.b or src.transform.d:
        raise InputFileError(f"{path} is rotated; warp it north-up first (gdalwarp)", param="mask")


def _check_pixel_size(src: rasterio.DatasetReader, spec: ModelSpec, path: str | Path) -> None:
    """Warn when the mask's pixels are more than :data:`GSD_TOLERANCE` off the model's ``gsd_m``."""
    try:
        _, metres = src.crs.linear_units_factor
    except RasterioCRSError:  # an engineering CRS: units unknown
        log.warning("%s has pixels in unknown units; check that they are about %.3g m", path, spec.gsd_m)
        return
    sizes = (abs(src.transform.a) * metres, abs(src.transform.e) * metres)
    if any(abs(size / spec.gsd_m - 1.0) > GSD_TOLERANCE for size in sizes):
        log.warning(
            "%s has %.3g × %.3g m pixels but the model %s was trained at %.3g m/px; the image may look wrong at "
            "this scale: build the mask at %.3g m/px", path, sizes[0], sizes[1], spec.name, spec.gsd_m, spec.gsd_m,
        )


def _check_region(region: Window | None, src: rasterio.DatasetReader) -> Window:
    full = Window(0, 0, src.width, src.height)
    if region is None:
        return full
    region = Window(int(region.col_off), int(region.row_off), int(region.width), int(region.height))
    inside = region.col_off >= 0 and region.row_off >= 0 and region.width > 0 and region.height > 0
    if not inside or region.col_off + region.width > src.width or region.row_off + region.height > src.height:
        raise ConfigError(f"region {region} is not inside the {src.width}×{src.height} px mask", param="region")
    return region


def _tags(src: rasterio.DatasetReader, model: LoadedModel, network: WindowNetwork, seed: object,
          overlap: int) -> dict[str, object]:
    source = src.tags()
    precision = network.choice.precision
    return {
        "CONTENT": "synthetic imagery generated by satgen-geo; not a photograph",
        "MODEL": model.spec.name,
        "MODEL_SHA256": model.sha256,
        "BACKEND": network.choice.backend,
        "PRECISION": f"{precision} (preview)" if precision in PREVIEW_PRECISIONS else precision,
        "TILE_PX": model.spec.tile_px,
        "OVERLAP_PX": overlap,
        "SEED": seed,
        "SOURCE": source.get("SOURCE", "mask GeoTIFF"),
        "ATTRIBUTION": source.get("ATTRIBUTION", OSM_ATTRIBUTION),
    }


def read_band(src: rasterio.DatasetReader, plan: WindowPlan, lattice_row: int, cols: range) -> np.ndarray:
    """The mask under the windows ``cols`` of one lattice row, zero beyond the raster: ``(2, tile_px, span)`` uint8.

    Window ``(lattice_row, c)``'s mask is ``band[:, :, x : x + tile_px]`` with
    ``x = plan.col_offsets[c] - plan.col_offsets[cols[0]]``.
    """
    tile, col_start = plan.tile_px, plan.col_offsets[cols[0]]
    span = plan.col_offsets[cols[-1]] + tile - col_start
    band = np.zeros((2, tile, span), dtype=np.uint8)
    r0, r1 = band_rows(plan, lattice_row)
    c1 = min(col_start + span, plan.width)
    row_off = plan.row_offsets[lattice_row]
    band[:, r0 - row_off : r1 - row_off, : c1 - col_start] = src.read(window=Window(col_start, r0, c1 - col_start, r1 - r0))
    return band


class _Renderer:
    """Runs strips: windows in row-major order, batches of ``batch_size``, a rolling blend, an IO thread."""

    def __init__(
        self, src: rasterio.DatasetReader, plan: WindowPlan, network: WindowNetwork, batch_size: int, seed: int
    ) -> None:
        self.src, self.plan, self.network, self.batch_size, self.seed = src, plan, network, batch_size, seed
        # copy only a real per-dataset mask (the AOI); a nodata value of 0 would mark background as invalid
        self.has_mask = any(MaskFlags.per_dataset in flags for flags in src.mask_flag_enums)

    def run(
        self, area: Window, dst_col: int, dst: rasterio.io.DatasetWriter, tick: ProgressFn, cancel: CancelFn | None
    ) -> int:
        """Render the windows of one ``area`` of the mask into ``dst`` from column ``dst_col`` on; return their number.

        The blend buffer lives only this long.
        """
        blend = BlendBuffer(self.plan, int(area.row_off), int(area.col_off), int(area.height), int(area.width),
                            self.batch_size, BLOCK_PX)
        done = started = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="satgen-io") as io:
            writes: list[Future] = []

            def finish(windows: list[TileWindow], outputs: Pending) -> None:
                nonlocal done
                for window, rgb in zip(windows, outputs()[: len(windows)], strict=True):
                    blend.add(window, rgb)
                done += len(windows)
                tick(done, blend.windows, "render")
                writes.extend(io.submit(self._write, dst, area, dst_col, row, rgb) for row, rgb in blend.pop(windows[-1]))

            batch: list[tuple[TileWindow, np.ndarray]] = []
            running: tuple[list[TileWindow], Pending] | None = None
            for item in self._windows(io, blend):
                batch.append(item)
                if len(batch) == self.batch_size or started + len(batch) == blend.windows:
                    check_cancel(cancel)
                    launched = ([w for w, _ in batch], self._start(batch))  # on a GPU it runs while the last one blends
                    started += len(batch)
                    if running:
                        finish(*running)
                    running, batch = launched, []
            if running:
                finish(*running)
            for write in writes:  # surfaces any write error
                write.result()
        return done

    def _windows(self, io: ThreadPoolExecutor, blend: BlendBuffer) -> Iterator[tuple[TileWindow, np.ndarray]]:
        """Every window of the blended area with its mask, row-major; the next band is read while this one computes."""
        tile, rows, cols = self.plan.tile_px, blend.rows, blend.cols
        pending = io.submit(read_band, self.src, self.plan, rows[0], cols)
        for lattice_row in rows:
            band = pending.result()
            if lattice_row + 1 in rows:
                pending = io.submit(read_band, self.src, self.plan, lattice_row + 1, cols)
            for col in cols:
                window = self.plan.window(lattice_row, col)
                x = window.col_off - self.plan.col_offsets[cols[0]]
                yield window, band[:, :, x : x + tile]

    def _start(self, batch: list[tuple[TileWindow, np.ndarray]]) -> Pending:
        """Start the network on ``batch``, padded to ``batch_size`` windows (their outputs come last)."""
        masks = np.zeros((self.batch_size, *batch[0][1].shape), dtype=np.uint8)
        masks[: len(batch)] = [m for _, m in batch]
        seeds = [window_seed(self.seed, w.row_off, w.col_off) for w, _ in batch]
        return self.network.start(masks, seeds + [0] * (self.batch_size - len(batch)))

    def _write(self, dst: rasterio.io.DatasetWriter, area: Window, dst_col: int, row: int, rgb: np.ndarray) -> None:
        window = Window(dst_col, row, int(area.width), rgb.shape[1])
        dst.write(rgb, window=window)
        if self.has_mask:
            src_window = Window(area.col_off, area.row_off + row, int(area.width), rgb.shape[1])
            dst.write_mask(self.src.dataset_mask(window=src_window), window=window)
