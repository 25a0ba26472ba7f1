"""How: the window lattice, blend weights and per-window seeds for tiled inference.

Pure functions over integers and small numpy arrays; no file IO, no torch. The render
engine plans windows over a ``(height, width)`` raster with :func:`plan_windows`, reads
each window of the mask boundlessly (pixels outside the raster read as zeros), runs the
network, multiplies the output by :func:`window_weights`, and adds the product into the
output at :func:`window_slices`. Windows come in row-major order; after lattice row ``r``
is accumulated, output rows ``[0, finished_rows(plan, r))`` are final.

Lattice
    Windows sit at multiples of ``stride = tile_px - overlap_px`` in *global* lattice
    pixels. By default the raster's pixel ``(0, 0)`` is global pixel ``(0, 0)``, so the
    first window starts at 0 and the last one may run past the right/bottom edge. With
    ``origin=(row0, col0)`` the raster's pixel ``(0, 0)`` is global pixel
    ``(row0, col0)``: the windows are those of the same global lattice, so a sub-area
    aligned to the lattice gets the same windows (offsets shifted by ``origin``) and,
    through :func:`window_seed` on global offsets, the same per-window seeds.

Weights
    Separable, ``w = wy[:, None] * wx[None, :]``. Along an axis each window gets a raw
    raised-cosine profile: a ramp ``0.5 - 0.5 cos(pi (t + 0.5) / overlap_px)`` over its
    first ``overlap_px`` pixels when it has a neighbour before it, the mirrored ramp over
    its last ``overlap_px`` pixels when it has one after it, and 1 elsewhere (so sides
    on the raster border or without a neighbour are flat 1, never a black border). The
    raw profiles are divided by their sum over all windows, which makes them a partition
    of unity for any ``0 <= overlap_px < tile_px``; when ``2 * overlap_px <= tile_px``
    the ramps of neighbours are already complementary and the division changes nothing
    beyond rounding. Every ramp value is strictly positive.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from satgen_geo.errors import SatgenError

__all__ = [
    "SEED_LIMIT",
    "TileWindow",
    "WindowPlan",
    "band_rows",
    "count_windows",
    "finished_rows",
    "plan_windows",
    "window_seed",
    "window_slices",
    "window_weights",
]

#: Seeds from :func:`window_seed` lie in ``[0, SEED_LIMIT)`` (63 bits: fits int64 and torch).
SEED_LIMIT = 1 << 63


@dataclass(frozen=True)
class TileWindow:
    """One square inference window.

    Attributes
    ----------
    row_off, col_off : int
        Top-left pixel in raster coordinates. Negative only with a non-zero ``origin``
        that is not on the lattice; the window may also extend past the bottom/right
        edge. Reads outside the raster are boundless (zeros).
    size : int
        Side length in pixels (the plan's ``tile_px``).
    index : int
        Row-major position in the plan, ``row * plan.cols + col``.
    row, col : int
        Position in the plan's window lattice.
    """

    row_off: int
    col_off: int
    size: int
    index: int
    row: int
    col: int


@dataclass(frozen=True)
class WindowPlan:
    """The windows covering a ``height`` x ``width`` raster; a sequence of :class:`TileWindow`.

    Build it with :func:`plan_windows`. ``origin`` is the global lattice pixel of the
    raster's pixel ``(0, 0)``. ``row_offsets`` / ``col_offsets`` are the raster
    coordinates of the lattice rows / columns (derived, strictly increasing).
    """

    height: int
    width: int
    tile_px: int = 256
    overlap_px: int = 128
    origin: tuple[int, int] = (0, 0)
    row_offsets: tuple[int, ...] = field(init=False, repr=False)
    col_offsets: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        height = _as_int("height", self.height)
        width = _as_int("width", self.width)
        tile_px = _as_int("tile_px", self.tile_px)
        overlap_px = _as_int("overlap_px", self.overlap_px)
        try:
            row0, col0 = self.origin
        except (TypeError, ValueError):
            raise SatgenError(f"origin={self.origin!r} must be a (row, col) pair of integers") from None
        row0, col0 = _as_int("origin row", row0), _as_int("origin col", col0)
        if height < 1 or width < 1:
            raise SatgenError(f"raster size {height}x{width} (height x width) must be at least 1x1 pixels")
        if tile_px < 1:
            raise SatgenError(f"tile_px={tile_px} must be a positive number of pixels")
        if not 0 <= overlap_px < tile_px:
            raise SatgenError(f"overlap_px={overlap_px} must be >= 0 and < tile_px={tile_px}")
        for name, value in (("height", height), ("width", width), ("tile_px", tile_px), ("overlap_px", overlap_px)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "origin", (row0, col0))
        stride = tile_px - overlap_px
        object.__setattr__(self, "row_offsets", _axis_offsets(height, tile_px, stride, row0))
        object.__setattr__(self, "col_offsets", _axis_offsets(width, tile_px, stride, col0))

    @property
    def stride(self) -> int:
        """Distance between the starts of neighbouring windows, ``tile_px - overlap_px``."""
        return self.tile_px - self.overlap_px

    @property
    def rows(self) -> int:
        """Number of lattice rows."""
        return len(self.row_offsets)

    @property
    def cols(self) -> int:
        """Number of lattice columns."""
        return len(self.col_offsets)

    def __len__(self) -> int:
        return self.rows * self.cols

    def __iter__(self) -> Iterator[TileWindow]:
        for row in range(self.rows):
            for col in range(self.cols):
                yield self.window(row, col)

    def __getitem__(self, index: int) -> TileWindow:
        index = operator.index(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"window index {index} out of range for a plan of {len(self)} windows")
        return self.window(*divmod(index, self.cols))

    def window(self, row: int, col: int) -> TileWindow:
        """Return the window at lattice position ``(row, col)``."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise SatgenError(f"lattice position ({row}, {col}) is outside the {self.rows}x{self.cols} window plan")
        return TileWindow(
            row_off=self.row_offsets[row],
            col_off=self.col_offsets[col],
            size=self.tile_px,
            index=row * self.cols + col,
            row=row,
            col=col,
        )

    def global_offset(self, window: TileWindow) -> tuple[int, int]:
        """Return ``window``'s top-left in global lattice pixels (``row_off + origin``)."""
        return window.row_off + self.origin[0], window.col_off + self.origin[1]

    def row_profile(self, row: int) -> np.ndarray:
        """Return the 1-D vertical weight profile (``tile_px``, float32, read-only) of lattice row ``row``."""
        if not 0 <= row < self.rows:
            raise SatgenError(f"lattice row {row} is outside 0..{self.rows - 1}")
        before, after = self._neighbours(row, self.rows)
        return _profile(self.tile_px, self.overlap_px, before, after)

    def col_profile(self, col: int) -> np.ndarray:
        """Return the 1-D horizontal weight profile (``tile_px``, float32, read-only) of lattice column ``col``."""
        if not 0 <= col < self.cols:
            raise SatgenError(f"lattice column {col} is outside 0..{self.cols - 1}")
        before, after = self._neighbours(col, self.cols)
        return _profile(self.tile_px, self.overlap_px, before, after)

    def _neighbours(self, position: int, count: int) -> tuple[int, int]:
        """Neighbours before/after ``position`` on one axis, capped at those that overlap it."""
        reach = (self.tile_px - 1) // self.stride
        return min(position, reach), min(count - 1 - position, reach)


def plan_windows(
    height: int,
    width: int,
    tile_px: int = 256,
    overlap_px: int = 128,
    origin: tuple[int, int] = (0, 0),
) -> WindowPlan:
    """Plan the square windows that cover a ``height`` x ``width`` raster.

    Parameters
    ----------
    height, width : int
        Raster size in pixels, at least 1.
    tile_px : int
        Window side in pixels.
    overlap_px : int
        Overlap between neighbouring windows, ``0 <= overlap_px < tile_px``; any value
        works (odd too), ``<= tile_px // 2`` keeps each pixel in at most 2 windows per axis.
    origin : tuple of int
        Global lattice pixel ``(row, col)`` of the raster's pixel ``(0, 0)``.

    Returns
    -------
    WindowPlan
        Sequence of :class:`TileWindow` in row-major order; the fewest lattice windows
        that cover every raster pixel (one window when the raster fits in one tile).

    Raises
    ------
    SatgenError
        On a non-integer, non-positive size or tile, or an overlap outside ``[0, tile_px)``.
    """
    return WindowPlan(height, width, tile_px, overlap_px, origin)


def count_windows(height: int, width: int, tile_px: int = 256, overlap_px: int = 128) -> int:
    """The number of windows :func:`plan_windows` would plan, computed without planning them.

    Constant time and memory whatever the raster size, so a front end can bound the work
    of a job before anything is allocated.
    """
    stride = tile_px - overlap_px
    rows, cols = (max(1, -((tile_px - length) // stride) + 1) for length in (height, width))
    return rows * cols


def window_weights(window: TileWindow, plan: WindowPlan) -> np.ndarray:
    """Return the blend weights of ``window`` in ``plan``.

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` float32 in ``(0, 1]``, read-only and shared between windows with
        the same neighbourhood. Summed over all windows of the plan at their offsets they
        are 1 at every raster pixel (to float32 rounding).
    """
    _check_member(window, plan)
    row_key = plan._neighbours(window.row, plan.rows)
    col_key = plan._neighbours(window.col, plan.cols)
    return _weights_2d(plan.tile_px, plan.overlap_px, row_key, col_key)


def window_slices(window: TileWindow, plan: WindowPlan) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Return ``(raster, tile)`` slice pairs of the part of ``window`` inside the raster.

    ``output[raster] += (prediction * weights)[tile]`` accumulates one window.
    """
    _check_member(window, plan)
    r0, r1 = max(window.row_off, 0), min(window.row_off + window.size, plan.height)
    c0, c1 = max(window.col_off, 0), min(window.col_off + window.size, plan.width)
    raster = (slice(r0, r1), slice(c0, c1))
    tile = (slice(r0 - window.row_off, r1 - window.row_off), slice(c0 - window.col_off, c1 - window.col_off))
    return raster, tile


def finished_rows(plan: WindowPlan, lattice_row: int) -> int:
    """Return how many output rows are final once lattice rows ``0..lattice_row`` are accumulated.

    That is the first raster row of lattice row ``lattice_row + 1``, or ``plan.height``
    after the last lattice row; ``lattice_row=-1`` (nothing accumulated) gives 0.
    """
    lattice_row = _as_int("lattice_row", lattice_row)
    if not -1 <= lattice_row < plan.rows:
        raise SatgenError(f"lattice_row={lattice_row} must be in -1..{plan.rows - 1}")
    if lattice_row == plan.rows - 1:
        return plan.height
    return max(plan.row_offsets[lattice_row + 1], 0)


def band_rows(plan: WindowPlan, lattice_row: int) -> tuple[int, int]:
    """Return the raster rows ``[start, stop)`` touched by the windows of lattice row ``lattice_row``."""
    lattice_row = _as_int("lattice_row", lattice_row)
    if not 0 <= lattice_row < plan.rows:
        raise SatgenError(f"lattice_row={lattice_row} must be in 0..{plan.rows - 1}")
    start = plan.row_offsets[lattice_row]
    return max(start, 0), min(start + plan.tile_px, plan.height)


def window_seed(seed: int, row_off: int, col_off: int) -> int:
    """Return a deterministic 63-bit seed for the window at a global pixel position.

    ``row_off`` / ``col_off`` should be global lattice offsets
    (:meth:`WindowPlan.global_offset`) so that sub-area renders reuse the same seeds.
    Stable across processes and Python versions (BLAKE2b, not ``hash()``); the result
    lies in ``[0, 2**63)``.
    """
    seed, row_off, col_off = _as_int("seed", seed), _as_int("row_off", row_off), _as_int("col_off", col_off)
    digest = hashlib.blake2b(f"{seed}:{row_off}:{col_off}".encode(), digest_size=8, person=b"satgen-window").digest()
    return int.from_bytes(digest, "little") >> 1


# --------------------------------------------------------------------------- internals


def _as_int(name: str, value: object) -> int:
    """Return ``value`` as a Python int, refusing bools, floats and strings."""
    if isinstance(value, bool):
        raise SatgenError(f"{name}={value!r} must be an integer, not a bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise SatgenError(f"{name}={value!r} must be an integer") from None


def _axis_offsets(length: int, tile: int, stride: int, origin: int) -> tuple[int, ...]:
    """Raster offsets of the lattice windows ``k * stride`` covering ``[origin, origin + length)``."""
    first = origin // stride  # last lattice start at or before the raster's first pixel
    last = max(first, -((tile - origin - length) // stride))  # first one reaching its end
    return tuple(k * stride - origin for k in range(first, last + 1))


def _check_member(window: TileWindow, plan: WindowPlan) -> None:
    if not (0 <= window.row < plan.rows and 0 <= window.col < plan.cols) or window != plan.window(
        window.row, window.col
    ):
        raise SatgenError(f"{window!r} is not a window of this {plan.rows}x{plan.cols} plan")


def _ramp(u: np.ndarray, overlap: int) -> np.ndarray:
    """Raised-cosine fade-in over ``u = 0..overlap-1`` (strictly positive), 1 beyond."""
    if overlap == 0:
        return np.ones(u.shape)
    t = np.minimum(u, overlap - 1)
    return np.where(u < overlap, 0.5 - 0.5 * np.cos(math.pi * (t + 0.5) / overlap), 1.0)


@lru_cache(maxsize=256)
def _profile(tile: int, overlap: int, before: int, after: int) -> np.ndarray:
    """1-D profile of a window with ``before``/``after`` overlapping neighbours on its axis."""
    stride = tile - overlap
    x = np.arange(tile)
    total = np.zeros(tile)
    own = np.zeros(tile)
    for j in range(-before, after + 1):
        u = x - j * stride  # position inside window j
        inside = (u >= 0) & (u < tile)
        u = np.clip(u, 0, tile - 1)
        raw = np.ones(tile)
        if j > -before:
            raw *= _ramp(u, overlap)
        if j < after:
            raw *= _ramp(tile - 1 - u, overlap)
        raw = np.where(inside, raw, 0.0)
        total += raw
        if j == 0:
            own = raw
    profile = (own / total).astype(np.float32)
    profile.flags.writeable = False
    return profile


@lru_cache(maxsize=32)
def _weights_2d(tile: int, overlap: int, row_key: tuple[int, int], col_key: tuple[int, int]) -> np.ndarray:
    weights = np.multiply.outer(_profile(tile, overlap, *row_key), _profile(tile, overlap, *col_key))
    weights.flags.writeable = False
    return weights
