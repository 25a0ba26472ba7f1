"""The blend buffer on its own: weighted windows in, finished uint8 rows out, no GeoTIFF and no network.

Window outputs here are seeded random arrays (a pure function of the window), so the streamed
result can be compared bit for bit with blending every window into one raster-sized array.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satgen_geo.blend import BlendBuffer, buffer_rows, to_uint8
from satgen_geo.errors import ConfigError
from satgen_geo.tiling import (
    TileWindow,
    WindowPlan,
    plan_windows,
    window_slices,
    window_weights,
)

BLOCK = 256


def _rgb(window: TileWindow) -> np.ndarray:
    """A window's "network output": seeded by its index, a little outside [-1, 1] to exercise clipping."""
    return np.random.default_rng(window.index).uniform(-1.05, 1.05, (3, window.size, window.size)).astype(np.float32)


def _naive(plan: WindowPlan) -> np.ndarray:
    """Every window blended into one raster-sized float32 array, row-major, then rounded."""
    full = np.zeros((3, plan.height, plan.width), dtype=np.float32)
    for window in plan:
        (rows, cols), tile = window_slices(window, plan)
        full[:, rows, cols] += _rgb(window)[:, tile[0], tile[1]] * window_weights(window, plan)[tile]
    return to_uint8(full)


def _stream(
    plan: WindowPlan, area: tuple[int, int, int, int], batch_size: int, block: int = BLOCK
) -> tuple[np.ndarray, list[tuple[int, int, int]], BlendBuffer]:
    """Add the area's windows in row-major batches, popping after each one as the engine does.

    Returns the assembled area, the pops as ``(row, rows, windows added so far)`` and the buffer.
    """
    row_off, col_off, height, width = area
    blend = BlendBuffer(plan, row_off, col_off, height, width, batch_size, block)
    windows = [plan.window(r, c) for r in blend.rows for c in blend.cols]
    image = np.zeros((3, height, width), dtype=np.uint8)
    pops = []
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        for window in batch:
            blend.add(window, _rgb(window))
        for row, rgb in blend.pop(batch[-1]):
            assert rgb.dtype == np.uint8 and rgb.shape[::2] == (3, width)
            image[:, row : row + rgb.shape[1]] = rgb
            pops.append((row, rgb.shape[1], start + len(batch)))
    return image, pops, blend


def test_streamed_rows_equal_blending_the_whole_raster_2048() -> None:
    plan = plan_windows(2048, 2048, 256, 128)
    assert (plan.rows, plan.cols) == (15, 15)
    image, pops, blend = _stream(plan, (0, 0, 2048, 2048), batch_size=8)
    # the buffer never grows: one GeoTIFF block of rows plus the lattice rows a batch spans
    # (a batch of 8 of the 15 windows per lattice row touches at most 2 lattice rows)
    assert blend.shape == (3, BLOCK + 2 * plan.stride + plan.tile_px, 2048)
    assert blend.windows == len(plan)
    # rows leave in whole 256-row blocks, in order, as soon as no later window touches them
    assert [(row, n) for row, n, _ in pops] == [(row, BLOCK) for row in range(0, 2048, BLOCK)]
    for row, n, done in pops:
        needed = sum(o < row + n for o in plan.row_offsets) * plan.cols
        at_most = sum(o < row + n + plan.tile_px for o in plan.row_offsets) * plan.cols
        assert needed <= done <= at_most, (row, done)
    assert pops[0][2] <= 3 * plan.cols  # the first block leaves after 3 of 15 lattice rows
    expected = _naive(plan)
    assert expected.std() > 5
    np.testing.assert_array_equal(image, expected)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[WindowPlan, tuple[int, int, int, int], int, int]:
    tile = draw(st.sampled_from([32, 64]))
    overlap = draw(st.integers(0, tile * 7 // 8))
    plan = plan_windows(draw(st.integers(1, 300)), draw(st.integers(1, 300)), tile, overlap)
    row, col = draw(st.integers(0, plan.height - 1)), draw(st.integers(0, plan.width - 1))
    area = (row, col, draw(st.integers(1, plan.height - row)), draw(st.integers(1, plan.width - col)))
    return plan, area, draw(st.integers(1, 40)), draw(st.sampled_from([8, 16, 32]))


@settings(max_examples=80, deadline=None)
@given(_cases())
def test_any_area_batch_and_block_equal_the_same_pixels_of_the_whole_blend(case: tuple) -> None:
    """Regions and strips: the blend of an area equals that area of the whole raster's blend."""
    plan, (row, col, height, width), batch_size, block = case
    image, pops, blend = _stream(plan, (row, col, height, width), batch_size, block)
    np.testing.assert_array_equal(image, _naive(plan)[:, row : row + height, col : col + width])
    assert [r for r, _, _ in pops] == [sum(n for _, n, _ in pops[:i]) for i in range(len(pops))]  # in order, no gap
    assert all(n == block for _, n, _ in pops[:-1]) and 0 < pops[-1][1] <= block
    assert pops[-1][2] == blend.windows == len(blend.rows) * len(blend.cols)


def test_buffer_rows() -> None:
    plan = plan_windows(2048, 2048, 256, 128)
    assert buffer_rows(plan, 15, 8, BLOCK) == BLOCK + 2 * 128 + 256
    assert buffer_rows(plan, 15, 15, BLOCK) == BLOCK + 2 * 128 + 256
    assert buffer_rows(plan, 15, 16, BLOCK) == BLOCK + 3 * 128 + 256
    assert buffer_rows(plan, 2, 64, BLOCK) == BLOCK + 33 * 128 + 256


def test_windows_outside_the_area_or_the_buffer_are_refused() -> None:
    plan = plan_windows(2048, 600, 256, 128)
    blend = BlendBuffer(plan, 0, 0, 2048, 300, batch_size=2)
    assert list(blend.cols) == [0, 1, 2]
    with pytest.raises(ConfigError, match="does not touch the blended area"):
        blend.add(plan.window(0, 3), _rgb(plan.window(0, 3)))
    with pytest.raises(ConfigError, match="not a window of this"):
        blend.add(plan_windows(2048, 600, 64, 32).window(0, 0), np.zeros((3, 64, 64), np.float32))
    # adding lattice row after lattice row without popping runs out of buffered rows
    with pytest.raises(ConfigError, match="outside the buffered rows"):
        for window in plan:
            if window.col in blend.cols:
                blend.add(window, _rgb(window))
    # popped rows are gone: a window reaching them again is refused
    blend = BlendBuffer(plan, 0, 0, 2048, 300, batch_size=3)
    for col in blend.cols:
        for row in range(3):
            blend.add(plan.window(row, col), _rgb(plan.window(row, col)))
    assert [(row, rgb.shape[1]) for row, rgb in blend.pop(plan.window(2, 2))] == [(0, 256)]
    with pytest.raises(ConfigError, match="outside the buffered rows"):
        blend.add(plan.window(0, 0), _rgb(plan.window(0, 0)))


def test_to_uint8_rounds_and_clips() -> None:
    rgb = np.array([-2.0, -1.0, -0.999, 0.0, 1 / 255, 0.999, 1.0, 3.0], dtype=np.float32)
    assert to_uint8(rgb).tolist() == [0, 0, 0, 128, 128, 255, 255, 255]
    assert to_uint8(rgb).dtype == np.uint8
