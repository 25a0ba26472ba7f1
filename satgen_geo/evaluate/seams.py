"""How visible the tiled-inference window boundaries are in a rendered image.

:func:`seam_score` compares the mean absolute difference across window-boundary lines
with the mean absolute difference across all other pixel lines (same direction). 1.0
means the boundaries are as smooth as the rest; clearly above 1 means visible seams.
:func:`seam_score_geotiff` computes the same number on a GeoTIFF, streaming rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from satgen_geo._validate import check_int
from satgen_geo.errors import EvaluationError
from satgen_geo.tiling import max_overlap, plan_windows

log = logging.getLogger(__name__)

__all__ = ["seam_score", "seam_score_geotiff"]

#: Pixels read per strip by :func:`seam_score_geotiff` unless told otherwise.
_STRIP_PIXELS = 1 << 22


@dataclass
class _SeamSums:
    """Running sums of absolute differences across boundary / other lines, per direction."""

    seam_x: float = 0
    n_seam_x: int = 0
    other_x: float = 0
    n_other_x: int = 0
    seam_y: float = 0
    n_seam_y: int = 0
    other_y: float = 0
    n_other_y: int = 0

    def add(self, block: np.ndarray, first_row: int, col_lines: np.ndarray, row_lines: np.ndarray) -> None:
        """Add a block of consecutive rows ``(C, h, W)`` starting at raster row ``first_row``.

        Horizontal differences are taken inside the block; vertical differences between
        its consecutive rows (the caller prepends the previous strip's last row).
        """
        if block.shape[2] > 1:
            dx = np.abs(np.diff(block, axis=2)).sum(axis=0)  # (h, W-1); column j = line j+1
            cols = col_lines[1:]
            self.seam_x += dx[:, cols].sum()
            self.other_x += dx[:, ~cols].sum()
            self.n_seam_x += dx.shape[0] * int(cols.sum())
            self.n_other_x += dx.shape[0] * int((~cols).sum())
        if block.shape[1] > 1:
            dy = np.abs(np.diff(block, axis=1)).sum(axis=0)  # (h-1, W); row k = line first_row+k+1
            rows = row_lines[first_row + 1 : first_row + block.shape[1]]
            self.seam_y += dy[rows].sum()
            self.other_y += dy[~rows].sum()
            self.n_seam_y += int(rows.sum()) * dy.shape[1]
            self.n_other_y += int((~rows).sum()) * dy.shape[1]

    def score(self) -> float:
        """Observed boundary differences over those expected from the other lines."""
        n_seam = self.n_seam_x + self.n_seam_y
        if n_seam == 0:
            log.warning("seam score: the image fits in one window, so it has no interior window boundaries")
            return math.nan
        mean_x = self.other_x / self.n_other_x if self.n_other_x else None
        mean_y = self.other_y / self.n_other_y if self.n_other_y else None
        if mean_x is None:
            mean_x = mean_y or 0.0
        if mean_y is None:
            mean_y = mean_x
        expected = self.n_seam_x * mean_x + self.n_seam_y * mean_y
        observed = float(self.seam_x + self.seam_y)
        if expected == 0:
            return 1.0 if observed == 0 else math.inf
        return observed / float(expected)


def _boundary_lines(length: int, offsets: Sequence[int], tile_px: int) -> np.ndarray:
    """Boolean ``(length,)``: index ``c`` is True when the line between pixels ``c-1`` and ``c`` is a window edge."""
    lines = np.zeros(length, dtype=bool)
    for offset in offsets:
        for c in (offset, offset + tile_px):
            if 0 < c < length:
                lines[c] = True
    return lines


def _seam_lines(height: int, width: int, tile_px: int, overlap_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row boundary lines of the render lattice, after checking it is one a render can use."""
    check_int(tile_px, "tile_px", "window size (px)")
    check_int(overlap_px, "overlap_px", "window overlap (px)", minimum=0, maximum=max_overlap(tile_px))
    plan = plan_windows(height, width, tile_px, overlap_px)
    return _boundary_lines(width, plan.col_offsets, tile_px), _boundary_lines(height, plan.row_offsets, tile_px)


def _numeric(block: np.ndarray) -> np.ndarray:
    """Integers as int32 (sums stay exact, so streaming gives identical results), floats as float64."""
    return block.astype(np.int32 if np.issubdtype(block.dtype, np.integer) else np.float64)


def seam_score(image: np.ndarray, tile_px: int = 256, overlap_px: int = 128) -> float:
    """How visible the tiled-inference window boundaries are.

    The boundary lines are the rows and columns where a window of
    ``plan_windows(H, W, tile_px, overlap_px)`` starts or ends, inside the image (the image
    border is excluded). For each direction the absolute difference across a line
    (``|I[:, :, c] - I[:, :, c-1]|`` for a column line ``c``, summed over channels) is
    averaged over the boundary lines and compared with its mean over all other lines of
    the same direction; the two directions are combined weighted by their boundary
    pixel counts, so anisotropic texture (e.g. mostly east-west roads) does not bias it.

    Parameters
    ----------
    image
        ``(C, H, W)`` or ``(H, W)`` array.
    tile_px, overlap_px
        The window lattice used for rendering.

    Returns
    -------
    float
        1.0 when the boundaries are as smooth as the rest, > 1 for visible seams; NaN when
        the image has no interior boundary (it fits in one window), ``inf`` when the
        image is flat except on the boundaries.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or min(image.shape) == 0:
        raise EvaluationError(f"seam score needs a (C, H, W) or (H, W) image, got shape {image.shape}")
    col_lines, row_lines = _seam_lines(image.shape[1], image.shape[2], tile_px, overlap_px)
    sums = _SeamSums()
    sums.add(_numeric(image), 0, col_lines, row_lines)
    return sums.score()


def seam_score_geotiff(
    path: str | Path, tile_px: int | None = None, overlap_px: int | None = None, strip_rows: int | None = None
) -> float:
    """:func:`seam_score` of an RGB GeoTIFF, read in strips of rows (bounded memory).

    Parameters
    ----------
    path
        GeoTIFF; bands 1-3 are used (all bands if it has fewer).
    tile_px, overlap_px
        The window lattice used for rendering; ``None``: the image's ``TILE_PX`` and
        ``OVERLAP_PX`` tags (satgen renders carry them), else 256 and 128.
    strip_rows
        Rows read at a time; default about 4 million pixels per strip.

    Returns
    -------
    float
        The same value as :func:`seam_score` on the whole image (exactly, for integer data).
    """
    from rasterio.windows import Window

    from satgen_geo.geotiff import open_raster

    if strip_rows is not None:
        check_int(strip_rows, "strip_rows", "rows read at a time")
    with open_raster(path) as src:
        tags = src.tags()
        tile_px = tile_px or int(tags.get("TILE_PX", 256))
        overlap_px = int(tags.get("OVERLAP_PX", 128)) if overlap_px is None else overlap_px
        height, width = src.height, src.width
        bands = [1, 2, 3] if src.count >= 3 else list(range(1, src.count + 1))
        rows = strip_rows or max(1, _STRIP_PIXELS // max(width, 1))
        col_lines, row_lines = _seam_lines(height, width, tile_px, overlap_px)
        sums = _SeamSums()
        previous: np.ndarray | None = None
        for r0 in range(0, height, rows):
            r1 = min(r0 + rows, height)
            block = _numeric(src.read(bands, window=Window(0, r0, width, r1 - r0)))
            sums.add(block, r0, col_lines, row_lines)
            if previous is not None:  # the line between the previous strip's last row and this one
                _add_vertical_only(sums, np.concatenate([previous, block[:, :1]], axis=1), r0 - 1, row_lines)
            previous = block[:, -1:]
    log.debug("seam sums for %s: %s", path, sums)
    return sums.score()


def _add_vertical_only(sums: _SeamSums, two_rows: np.ndarray, first_row: int, row_lines: np.ndarray) -> None:
    """Add the vertical differences between two consecutive rows ``(C, 2, W)``."""
    dy = np.abs(two_rows[:, 1] - two_rows[:, 0]).sum(axis=0)
    if row_lines[first_row + 1]:
        sums.seam_y += dy.sum()
        sums.n_seam_y += dy.shape[0]
    else:
        sums.other_y += dy.sum()
        sums.n_other_y += dy.shape[0]


