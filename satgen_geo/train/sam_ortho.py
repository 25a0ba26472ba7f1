"""SAM 3 on a georeferenced image of any size: a two-band mask GeoTIFF on the image's own grid.

The image is read window by window on the render engine's lattice
(:func:`satgen_geo.tiling.plan_windows`, :attr:`SamConfig.window_px` with
:attr:`SamConfig.overlap_px`); windows that run past the raster's edge are read only where they
are inside it. Each window's merged mask is max-merged (a logical OR) into a rolling band of
rows: an object cut by one window's edge is seen whole by its overlapping neighbour and kept,
and no probability is averaged across windows. Rows are written once final, so memory grows
with the width and the window, never with the height.

The output is what ``satgen mask`` writes: band 1 roads, band 2 buildings, uint8 0/255, tiled and
compressed, with the image's CRS and transform. The class SAM 3 does not draw comes from an
optional label raster on the same grid (values above 127 are the class) or is zero.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from satgen_geo._atomic import check_distinct, check_writable
from satgen_geo.errors import CRSError, InputFileError
from satgen_geo.geotiff import open_for_writing, open_raster, profile
from satgen_geo.grid import Grid
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.rasterize import BAND_NAMES
from satgen_geo.tiling import WindowPlan, band_rows, finished_rows, plan_windows, window_slices
from satgen_geo.train.sam import SamConfig, SamSegmenter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrthoCompletion:
    """What :func:`complete_ortho` wrote: the mask, the windows SAM 3 saw, the fraction of pixels it marked."""

    path: Path
    windows: int
    coverage: float


def complete_ortho(
    ortho: str | Path,
    output: str | Path,
    config: SamConfig,
    label: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> OrthoCompletion:
    """Write the two-band mask GeoTIFF of ``ortho`` with SAM 3's ``config.missing`` class.

    Parameters
    ----------
    ortho
        A georeferenced 8-bit RGB raster (bands 1–3 are read).
    output
        The mask GeoTIFF, written atomically.
    config
        The class, prompt, model and windows.
    label
        A raster of the other class on exactly the image's grid (band 1), or ``None`` for zeros.
    progress, cancel
        See :mod:`satgen_geo.progress`; the stage is ``"sam"``, counted in windows.

    Raises
    ------
    InputFileError
        For an unreadable or non-RGB image, or a label raster on another grid.
    CRSError
        When the image has no CRS.
    """
    output = check_writable(output)
    check_distinct(output, "output", {"ortho": ortho, "label_raster": label})
    tick = report(progress)
    with open_raster(ortho, param="ortho") as src, \
            (open_raster(label, param="label_raster") if label else nullcontext()) as known:
        grid = _image_grid(src, ortho)
        if known is not None:
            _check_same_grid(known, grid, label)
        plan = plan_windows(grid.height, grid.width, config.window_px, config.overlap_px)
        segment = SamSegmenter(config)
        tags = {"SOURCE": f"SAM 3 ({config.model}, prompt {config.prompt!r}) on {Path(ortho).name}"
                + (f"; {config.known} from {Path(label).name}" if label else ""),
                "GSD_M": grid.gsd_m, "BANDS": "1=roads 2=buildings, 0/255"}
        marked = 0
        with open_for_writing(output, profile(grid, 2), BAND_NAMES, tags) as dst:
            for top, rows in _sam_rows(src, plan, segment, config.batch_size, cancel, tick):
                window = Window(0, top, grid.width, len(rows))
                mask = np.zeros((2, *rows.shape), dtype=np.uint8)
                mask[BAND_NAMES.index(config.missing)][rows] = 255
                if known is not None:
                    mask[BAND_NAMES.index(config.known)][known.read(1, window=window) > 127] = 255
                dst.write(mask, window=window)
                marked += int(rows.sum())
    log.info("wrote %s: SAM 3 %s over %d windows", output, config.missing, len(plan))
    return OrthoCompletion(output, len(plan), marked / (grid.width * grid.height))


def _image_grid(src: DatasetReader, path: str | Path) -> Grid:
    if src.count < 3 or src.dtypes[0] != "uint8":
        raise InputFileError(f"{path} must be an 8-bit RGB raster (it has {src.count} {src.dtypes[0]} band(s)); "
                             "convert it with gdal_translate -ot Byte -scale", param="ortho")
    if src.crs is None:
        raise CRSError(f"{path} has no CRS; assign one with gdal_edit.py -a_srs EPSG:<code>, or complete images "
                       "without georeferencing with 'satgen dataset complete'", param="ortho")
    return Grid(src.crs, src.transform, src.width, src.height)


def _check_same_grid(known: DatasetReader, grid: Grid, path: str | Path | None) -> None:
    if (known.width, known.height, known.transform, known.crs) != (grid.width, grid.height, grid.transform, grid.crs):
        raise InputFileError(
            f"label raster {path} is not on the image's grid ({known.width}×{known.height} px, {known.crs} vs "
            f"{grid.width}×{grid.height} px, {grid.crs}); warp it first (gdalwarp -te/-tr/-t_srs of the image)",
            param="label_raster",
        )


def _sam_rows(
    src: DatasetReader, plan: WindowPlan, segment: SamSegmenter, batch_size: int, cancel: CancelFn | None, tick: ProgressFn,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, rows)``: final rows of SAM's mask (bool, full width), top to bottom."""
    top, band = 0, np.zeros((0, plan.width), dtype=bool)
    for lattice_row in range(plan.rows):
        bottom = band_rows(plan, lattice_row)[1]
        band = np.concatenate([band, np.zeros((bottom - top - len(band), plan.width), dtype=bool)])
        windows = [plan.window(lattice_row, col) for col in range(plan.cols)]
        for start in range(0, len(windows), batch_size):
            check_cancel(cancel)
            inside = [window_slices(window, plan)[0] for window in windows[start : start + batch_size]]
            images = [src.read((1, 2, 3), window=Window.from_slices(rows, cols)) for rows, cols in inside]
            for (rows, cols), mask in zip(inside, segment(images), strict=True):
                band[rows.start - top : rows.stop - top, cols] |= mask
            tick(lattice_row * plan.cols + start + len(inside), len(plan), "sam")
        done = finished_rows(plan, lattice_row)
        yield top, band[: done - top]
        top, band = done, band[done - top :]
