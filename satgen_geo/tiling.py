"""How: the window lattice, blend weights and per-window seeds for tiled inference.

Pure functions over integers and small numpy arrays; no file IO, no torch. The render
engine plans the windows of the *whole* mask with :func:`plan_windows`, even when it renders
only a part of it: :meth:`WindowPlan.covering` gives the lattice rows and columns whose
windows touch that part, so a part is rendered with exactly the windows, weights and seeds
of a full render. Each window's mask is read boundlessly (pixels outside the raster read as
zeros; :func:`band_rows` gives the raster rows under a lattice row), the network's output
is multiplied by :func:`window_weights` and added into the output at
:func:`window_slices` (see :class:`satgen_geo.blend.BlendBuffer`). Windows come in
row-major order; after lattice row ``r`` is accumulated, output rows
``[0, finished_rows(plan, r))`` are final. :func:`count_windows` counts a plan's windows in
constant time, to bound a job before anything is allocated.

Lattice
    Windows start at multiples of ``stride = tile_px - overlap_px``: the first at pixel
    ``(0, 0)``, the last of each axis possibly running past the right/bottom edge. A
    window's seed comes from :func:`window_seed` of its raster offsets.

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

Misuse (a window of another plan, a lattice row out of range, a non-integer size) raises
:class:`~satgen_geo.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from satgen_geo.errors import ConfigError

__all__ = [
    "SEED_LIMIT",
    "TileWindow",
    "WindowPlan",
    "band_rows",
    "count_windows",
    "finished_rows",
    "max_overlap",
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
        Top-left pixel in raster coordinates (never negative); the window may extend past
        the bottom/right edge, where reads are boundless (zeros).
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

    Build it with :func:`plan_windows`. ``row_offsets`` / ``col_offsets`` are the raster
    coordinates of the lattice rows / columns (derived, strictly increasing, from 0).
    """

    height: int
    width: int
    tile_px: int = 256
    overlap_px: int = 128
    row_offsets: tuple[int, ...] = field(init=False, repr=False)
    col_offsets: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        height = _as_int("height", self.height)
        width = _as_int("width", self.width)
        tile_px = _as_int("tile_px", self.tile_px)
        overlap_px = _as_int("overlap_px", self.overlap_px)
        if height < 1 or width < 1:
            raise ConfigError(f"raster size {height}x{width} (height x width) must be at least 1x1 pixels")
        if tile_px < 1:
            raise ConfigError(f"tile_px={tile_px} must be a positive number of pixels")
        if not 0 <= overlap_px < tile_px:
            raise ConfigError(f"overlap_px={overlap_px} must be >= 0 and < tile_px={tile_px}", param="overlap_px")
        for name, value in (("height", height), ("width", width), ("tile_px", tile_px), ("overlap_px", overlap_px)):
            object.__setattr__(self, name, value)
        stride = tile_px - overlap_px
        object.__setattr__(self, "row_offsets", tuple(range(0, _axis_count(height, tile_px, stride) * stride, stride)))
        object.__setattr__(self, "col_offsets", tuple(range(0, _axis_count(width, tile_px, stride) * stride, stride)))

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
            raise ConfigError(f"lattice position ({row}, {col}) is outside the {self.rows}x{self.cols} window plan")
        return TileWindow(
            row_off=self.row_offsets[row],
            col_off=self.col_offsets[col],
            size=self.tile_px,
            index=row * self.cols + col,
            row=row,
            col=col,
        )

    def covering(self, row_off: int, col_off: int, height: int, width: int) -> tuple[range, range]:
        """Return the lattice rows and columns whose windows touch a ``height`` x ``width`` area at ``(row_off, col_off)``.

        The area must lie inside the raster. Its windows, in row-major order, are
        ``plan.window(r, c)`` for ``r`` in the rows and ``c`` in the columns.
        """
        row_off, col_off = _as_int("row_off", row_off), _as_int("col_off", col_off)
        height, width = _as_int("height", height), _as_int("width", width)
        if min(row_off, col_off) < 0 or min(height, width) < 1 or row_off + height > self.height \
                or col_off + width > self.width:
            raise ConfigError(
                f"area of {height}x{width} px at ({row_off}, {col_off}) is not inside the "
                f"{self.height}x{self.width} px raster", param="region",
            )
        rows = _touching(row_off, height, self.rows, self.tile_px, self.stride)
        return rows, _touching(col_off, width, self.cols, self.tile_px, self.stride)

    def row_profile(self, row: int) -> np.ndarray:
        """Return the 1-D vertical weight profile (``tile_px``, float32, read-only) of lattice row ``row``."""
        if not 0 <= row < self.rows:
            raise ConfigError(f"lattice row {row} is outside 0..{self.rows - 1}")
        before, after = self._neighbours(row, self.rows)
        return _profile(self.tile_px, self.overlap_px, before, after)

    def col_profile(self, col: int) -> np.ndarray:
        """Return the 1-D horizontal weight profile (``tile_px``, float32, read-only) of lattice column ``col``."""
        if not 0 <= col < self.cols:
            raise ConfigError(f"lattice column {col} is outside 0..{self.cols - 1}")
        before, after = self._neighbours(col, self.cols)
        return _profile(self.tile_px, self.overlap_px, before, after)

    def _neighbours(self, position: int, count: int) -> tuple[int, int]:
        """Neighbours before/after ``position`` on one axis, capped at those that overlap it."""
        reach = (self.tile_px - 1) // self.stride
        return min(position, reach), min(count - 1 - position, reach)


def plan_windows(height: int, width: int, tile_px: int = 256, overlap_px: int = 128) -> WindowPlan:
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

    Returns
    -------
    WindowPlan
        Sequence of :class:`TileWindow` in row-major order; the fewest lattice windows
        that cover every raster pixel (one window when the raster fits in one tile).

    Raises
    ------
    ConfigError
        On a non-integer, non-positive size or tile, or an overlap outside ``[0, tile_px)``.
    """
    return WindowPlan(height, width, tile_px, overlap_px)


def max_overlap(tile_px: int) -> int:
    """The largest accepted window overlap for ``tile_px`` windows: a stride of at least 1/8 window."""
    return tile_px - tile_px // 8


def count_windows(
    height: int, width: int, tile_px: int = 256, overlap_px: int = 128, area: tuple[int, int, int, int] | None = None
) -> int:
    """The number of windows :func:`plan_windows` would plan, computed without planning them.

    With ``area=(row_off, col_off, area_height, area_width)`` (inside the raster), only the
    windows that touch it, as :meth:`WindowPlan.covering` lists them. Constant time and
    memory whatever the raster size, so a front end can bound the work of a job before
    anything is allocated.
    """
    stride = tile_px - overlap_px
    rows, cols = _axis_count(height, tile_px, stride), _axis_count(width, tile_px, stride)
    if area is None:
        return rows * cols
    row_off, col_off, area_height, area_width = area
    touched_rows = _touching(row_off, area_height, rows, tile_px, stride)
    return len(touched_rows) * len(_touching(col_off, area_width, cols, tile_px, stride))


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
    r1 = min(window.row_off + window.size, plan.height)
    c1 = min(window.col_off + window.size, plan.width)
    raster = (slice(window.row_off, r1), slice(window.col_off, c1))
    tile = (slice(0, r1 - window.row_off), slice(0, c1 - window.col_off))
    return raster, tile


def finished_rows(plan: WindowPlan, lattice_row: int) -> int:
    """Return how many output rows are final once lattice rows ``0..lattice_row`` are accumulated.

    That is the first raster row of lattice row ``lattice_row + 1``, or ``plan.height``
    after the last lattice row; ``lattice_row=-1`` (nothing accumulated) gives 0.
    """
    lattice_row = _as_int("lattice_row", lattice_row)
    if not -1 <= lattice_row < plan.rows:
        raise ConfigError(f"lattice_row={lattice_row} must be in -1..{plan.rows - 1}")
    if lattice_row == plan.rows - 1:
        return plan.height
    return plan.row_offsets[lattice_row + 1]


def band_rows(plan: WindowPlan, lattice_row: int) -> tuple[int, int]:
    """Return the raster rows ``[start, stop)`` touched by the windows of lattice row ``lattice_row``."""
    lattice_row = _as_int("lattice_row", lattice_row)
    if not 0 <= lattice_row < plan.rows:
        raise ConfigError(f"lattice_row={lattice_row} must be in 0..{plan.rows - 1}")
    start = plan.row_offsets[lattice_row]
    return start, min(start + plan.tile_px, plan.height)


def window_seed(seed: int, row_off: int, col_off: int) -> int:
    """Return a deterministic 63-bit seed for the window at a raster position.

    The engine passes the window's offsets in the whole mask's plan, so a render of a part
    of the mask reuses the full render's seeds. Stable across processes and Python versions
    (BLAKE2b, not ``hash()``); the result lies in ``[0, 2**63)``.
    """
    seed, row_off, col_off = _as_int("seed", seed), _as_int("row_off", row_off), _as_int("col_off", col_off)
    digest = hashlib.blake2b(f"{seed}:{row_off}:{col_off}".encode(), digest_size=8, person=b"satgen-window").digest()
    return int.from_bytes(digest, "little") >> 1


# --------------------------------------------------------------------------- internals


def _as_int(name: str, value: object) -> int:
    """Return ``value`` as a Python int, refusing bools, floats and strings."""
    param = name if name in ("overlap_px", "seed") else None
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be an integer, not a bool", param=param)
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{name}={value!r} must be an integer", param=param) from None


def _axis_count(length: int, tile: int, stride: int) -> int:
    """Number of lattice windows ``k * stride`` (``k >= 0``) needed to cover ``[0, length)``."""
    return max(0, -((tile - length) // stride)) + 1


def _touching(start: int, length: int, count: int, tile: int, stride: int) -> range:
    """Lattice positions ``k < count`` on one axis with ``k * stride < start + length`` and ``k * stride + tile > start``."""
    first = max(0, (start - tile) // stride + 1)
    last = min(count - 1, (start + length - 1) // stride)
    return range(first, last + 1)


def _check_member(window: TileWindow, plan: WindowPlan) -> None:
    if not (0 <= window.row < plan.rows and 0 <= window.col < plan.cols) or window != plan.window(
        window.row, window.col
    ):
        raise ConfigError(f"{window!r} is not a window of this {plan.rows}x{plan.cols} plan")


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
