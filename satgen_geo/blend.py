"""Blend: weighted window outputs summed in a rolling buffer, finished rows out as uint8 RGB.

Pure numpy over a :class:`~satgen_geo.tiling.WindowPlan` of the whole raster; no file IO, no
torch. A :class:`BlendBuffer` covers one area of the raster (all of it, a ``region``, or one
vertical strip) and holds only the rows that may still change: windows are added in
row-major order, each multiplied by its :func:`~satgen_geo.tiling.window_weights` and
clipped to the raster (:func:`~satgen_geo.tiling.window_slices`) and to the area; after
each batch, :meth:`BlendBuffer.pop` hands out whole blocks of rows that no later window
touches (:func:`~satgen_geo.tiling.finished_rows`), and the rest of the area at the end.
The pixels are those of summing every window into one array the size of the raster.
"""

from __future__ import annotations

import numpy as np

from satgen_geo.errors import ConfigError
from satgen_geo.tiling import (
    TileWindow,
    WindowPlan,
    finished_rows,
    window_slices,
    window_weights,
)

__all__ = ["BlendBuffer", "buffer_rows", "to_uint8"]


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Network output in [-1, 1] → uint8 0..255 (rounded, clipped)."""
    return np.clip(np.rint((rgb + 1.0) * 127.5), 0, 255).astype(np.uint8)


def buffer_rows(plan: WindowPlan, columns: int, batch_size: int, block_px: int) -> int:
    """Rows a :class:`BlendBuffer` holds: under ``block_px`` final rows, plus the lattice rows one batch can span.

    ``columns`` is the number of lattice columns in the area: a batch of ``batch_size``
    windows in row-major order touches at most ``ceil(batch_size / columns) + 1`` lattice rows.
    """
    spanned = -(-batch_size // columns) + 1
    return block_px + spanned * plan.stride + plan.tile_px


class BlendBuffer:
    """The blend of one area of ``plan``'s raster, held a few hundred rows at a time.

    Parameters
    ----------
    plan
        The windows of the whole raster.
    row_off, col_off, height, width
        The area, in raster pixels; it must lie inside the raster.
    batch_size
        The most windows added between two calls of :meth:`pop` (sizes the buffer).
    block_px
        Rows are popped in blocks of this many (a GeoTIFF block), the last one shorter.

    Attributes
    ----------
    rows, cols
        The lattice rows and columns whose windows touch the area (:meth:`WindowPlan.covering`).
    shape
        ``(3, buffer_rows(...), width)``: the float32 buffer never grows.
    """

    def __init__(
        self, plan: WindowPlan, row_off: int, col_off: int, height: int, width: int, batch_size: int, block_px: int = 256
    ) -> None:
        self.plan, self.block_px = plan, block_px
        self.rows, self.cols = plan.covering(row_off, col_off, height, width)
        self.row_off, self.col_off, self.height, self.width = row_off, col_off, height, width
        self.shape = (3, buffer_rows(plan, len(self.cols), batch_size, block_px), width)
        self._buffer = np.zeros(self.shape, dtype=np.float32)
        self._top = 0  # area row held in _buffer[:, 0]

    @property
    def windows(self) -> int:
        """How many windows touch the area."""
        return len(self.rows) * len(self.cols)

    def add(self, window: TileWindow, rgb: np.ndarray) -> None:
        """Add ``rgb * weights`` (``rgb``: ``(3, tile, tile)`` float) of one window to the part inside the area.

        Raises
        ------
        ConfigError
            When ``window`` does not touch the area, or reaches rows already popped or
            beyond the buffer (windows must come in row-major order, popped per batch).
        """
        if window.row not in self.rows or window.col not in self.cols:
            raise ConfigError(f"{window!r} does not touch the blended area")
        (raster_r, raster_c), _ = window_slices(window, self.plan)
        r0, r1 = max(raster_r.start, self.row_off), min(raster_r.stop, self.row_off + self.height)
        c0, c1 = max(raster_c.start, self.col_off), min(raster_c.stop, self.col_off + self.width)
        b0, b1 = r0 - self.row_off - self._top, r1 - self.row_off - self._top
        if b0 < 0 or b1 > self.shape[1]:
            raise ConfigError(
                f"{window!r} reaches area rows {r0 - self.row_off}..{r1 - self.row_off}, outside the buffered "
                f"rows {self._top}..{self._top + self.shape[1]}"
            )
        tr, tc = slice(r0 - window.row_off, r1 - window.row_off), slice(c0 - window.col_off, c1 - window.col_off)
        weights = window_weights(window, self.plan)
        self._buffer[:, b0:b1, c0 - self.col_off : c1 - self.col_off] += rgb[:, tr, tc] * weights[tr, tc]

    def pop(self, after: TileWindow) -> list[tuple[int, np.ndarray]]:
        """Take the finished rows once every window of the area up to ``after`` (row-major) is added.

        Returns
        -------
        list of (int, numpy.ndarray)
            ``(area_row, uint8 (3, n, width))`` for each whole block of final rows, in
            order; after the area's last window, every remaining row (the last block shorter).
        """
        complete = after.row if after.col == self.cols[-1] else after.row - 1
        final = min(max(finished_rows(self.plan, complete) - self.row_off, 0), self.height)
        popped = []
        while final - self._top >= self.block_px or (final == self.height and final > self._top):
            n = min(self.block_px, final - self._top)
            popped.append((self._top, to_uint8(self._buffer[:, :n])))
            self._buffer[:, :-n] = self._buffer[:, n:].copy()
            self._buffer[:, -n:] = 0.0
            self._top += n
        return popped
