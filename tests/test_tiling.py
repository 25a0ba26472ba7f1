"""Tests for satgen_geo.tiling: window lattice, blend weights, seeds, covered windows and row flushing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from satgen_geo.errors import SatgenError
from satgen_geo.tiling import (
    SEED_LIMIT,
    TileWindow,
    WindowPlan,
    band_rows,
    count_windows,
    finished_rows,
    plan_windows,
    window_seed,
    window_slices,
    window_weights,
)

FAST = settings(max_examples=60, deadline=None)


@st.composite
def plan_params(draw: st.DrawFn, max_windows: int | None = 16) -> dict:
    """Tile, overlap (biased to <= tile/2, but any value in [0, tile)) and size."""
    tile = draw(st.sampled_from([32, 64, 256]))
    overlap = draw(st.one_of(st.integers(0, tile // 2).map(lambda o: o - o % 2), st.integers(0, tile - 1)))
    stride = tile - overlap
    # Cap windows per axis so the 2-D accumulation stays fast with tiny strides.
    max_len = 2000 if max_windows is None else min(2000, tile + stride * (max_windows - 1))
    height = draw(st.integers(1, max_len))
    width = draw(st.integers(1, max_len))
    return {"height": height, "width": width, "tile_px": tile, "overlap_px": overlap}


def accumulate(plan: WindowPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of weights, window count and largest single-window weight at every raster pixel."""
    total = np.zeros((plan.height, plan.width))
    count = np.zeros((plan.height, plan.width), dtype=np.int64)
    biggest = np.zeros((plan.height, plan.width))
    for window in plan:
        weights = window_weights(window, plan)
        assert weights.shape == (plan.tile_px, plan.tile_px)
        assert weights.dtype == np.float32
        assert weights.min() > 0.0 and weights.max() <= 1.0
        raster, tile = window_slices(window, plan)
        total[raster] += weights[tile]
        count[raster] += 1
        np.maximum(biggest[raster], weights[tile], out=biggest[raster])
    return total, count, biggest


# --------------------------------------------------------------------------- weights


@FAST
@given(plan_params())
def test_weights_partition_unity_and_cover_every_pixel(params: dict) -> None:
    plan = plan_windows(**params)
    total, count, biggest = accumulate(plan)
    assert count.min() >= 1
    assert np.abs(total - 1.0).max() < 1e-6
    if 2 * plan.overlap_px <= plan.tile_px:  # at most two windows per pixel and axis
        assert biggest.min() >= 0.25 - 1e-6
        assert biggest[0].min() >= 0.5 - 1e-6 and biggest[:, 0].min() >= 0.5 - 1e-6
        assert biggest[-1].min() >= 0.5 - 1e-6 and biggest[:, -1].min() >= 0.5 - 1e-6


@settings(max_examples=200, deadline=None)
@given(plan_params(max_windows=None))
def test_axis_profiles_partition_unity_full_range(params: dict) -> None:
    # 2-D weights are the outer product of these, so the 2-D sum is the product of the 1-D sums.
    plan = plan_windows(**params)
    for length, offsets, profile in (
        (plan.height, plan.row_offsets, plan.row_profile),
        (plan.width, plan.col_offsets, plan.col_profile),
    ):
        total = np.zeros(length + 2 * plan.tile_px)
        for i, off in enumerate(offsets):
            p = profile(i)
            assert p.min() > 0.0 and p.max() <= 1.0
            total[off + plan.tile_px : off + 2 * plan.tile_px] += p
        inside = total[plan.tile_px : plan.tile_px + length]
        assert np.abs(inside - 1.0).max() < 1e-6
        # Border pixels see a flat 1 from the single window covering them: no dark border.
        assert profile(0)[-offsets[0]] == 1.0
        assert profile(len(offsets) - 1)[length - 1 - offsets[-1]] == 1.0


def test_no_black_first_row_or_column() -> None:
    plan = plan_windows(700, 500)
    first = window_weights(plan.window(0, 0), plan)
    assert first[0, 0] == 1.0 and first[0].min() > 0.0 and first[:, 0].min() > 0.0
    total, _, _ = accumulate(plan)
    assert np.abs(total[0] - 1).max() < 1e-6 and np.abs(total[:, 0] - 1).max() < 1e-6


def test_interior_profile_is_raised_cosine() -> None:
    plan = plan_windows(1024, 1024, 256, 128)
    t = np.arange(128)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (t + 0.5) / 128)
    middle = plan.row_profile(1)
    np.testing.assert_allclose(middle[:128], ramp, atol=1e-7)
    np.testing.assert_allclose(middle[128:], ramp[::-1], atol=1e-7)
    assert middle.min() > 0.0
    first, last = plan.row_profile(0), plan.row_profile(plan.rows - 1)
    np.testing.assert_array_equal(first[:128], 1.0)
    np.testing.assert_array_equal(last[128:], 1.0)


def test_zero_overlap_weights_are_ones() -> None:
    plan = plan_windows(100, 70, 32, 0)
    assert plan.stride == 32
    for window in plan:
        np.testing.assert_array_equal(window_weights(window, plan), 1.0)


def test_single_window_is_flat() -> None:
    plan = plan_windows(10, 200, 256, 128)
    assert len(plan) == 1
    np.testing.assert_array_equal(window_weights(plan[0], plan), 1.0)


def test_weights_are_cached_and_read_only() -> None:
    plan = plan_windows(2000, 2000)
    assert window_weights(plan.window(1, 1), plan) is window_weights(plan.window(2, 3), plan)
    with pytest.raises(ValueError):
        window_weights(plan.window(1, 1), plan)[0, 0] = 0.0


# --------------------------------------------------------------------------- lattice


@settings(max_examples=200, deadline=None)
@given(plan_params(max_windows=None))
def test_lattice_is_minimal_and_aligned(params: dict) -> None:
    plan = plan_windows(**params)
    for length, offsets in ((plan.height, plan.row_offsets), (plan.width, plan.col_offsets)):
        assert all(off % plan.stride == 0 for off in offsets)
        assert all(b - a == plan.stride for a, b in itertools.pairwise(offsets))
        assert offsets[0] <= 0 < offsets[0] + plan.stride  # the only lattice window reaching pixel 0
        assert offsets[-1] + plan.tile_px >= length  # last window reaches the far edge...
        assert len(offsets) == 1 or offsets[-2] + plan.tile_px < length  # ...and is needed
    assert plan.row_offsets[0] == plan.col_offsets[0] == 0
    assert count_windows(plan.height, plan.width, plan.tile_px, plan.overlap_px) == len(plan)


@FAST
@given(plan_params(max_windows=8))
def test_windows_are_row_major(params: dict) -> None:
    plan = plan_windows(**params)
    windows = list(plan)
    assert len(windows) == len(plan) == plan.rows * plan.cols
    assert [w.index for w in windows] == list(range(len(plan)))
    assert [(w.row, w.col) for w in windows] == [(r, c) for r in range(plan.rows) for c in range(plan.cols)]
    assert all(w.size == plan.tile_px for w in windows)
    assert plan[-1] == windows[-1] and plan[0] == windows[0]


def test_small_raster_gets_one_window() -> None:
    plan = plan_windows(1, 1, 64, 32)
    assert len(plan) == 1 and plan[0] == TileWindow(0, 0, 64, 0, 0, 0)
    assert len(plan_windows(256, 256)) == 1
    assert plan_windows(257, 256).rows == 2


def test_window_slices_clip_to_raster() -> None:
    plan = plan_windows(300, 200, 256, 128)
    window = plan.window(1, 0)
    assert (window.row_off, window.col_off) == (128, 0)
    raster, tile = window_slices(window, plan)
    assert raster == (slice(128, 300), slice(0, 200))
    assert tile == (slice(0, 172), slice(0, 200))


# --------------------------------------------------------------------------- row flushing


@settings(max_examples=200, deadline=None)
@given(plan_params(max_windows=None))
def test_finished_rows_are_final_and_tight(params: dict) -> None:
    plan = plan_windows(**params)
    assert finished_rows(plan, -1) == 0
    assert finished_rows(plan, plan.rows - 1) == plan.height
    previous = 0
    for r in range(plan.rows):
        done = finished_rows(plan, r)
        start, stop = band_rows(plan, r)
        assert previous <= start < stop <= plan.height
        assert previous <= done <= stop
        # Nothing later touches rows < done; the next band starts exactly there.
        assert all(band_rows(plan, later)[0] >= done for later in range(r + 1, plan.rows))
        if r + 1 < plan.rows:
            assert band_rows(plan, r + 1)[0] == done
        previous = done


def test_streaming_flush_matches_full_accumulation() -> None:
    plan = plan_windows(900, 300, 256, 96)
    full, _, _ = accumulate(plan)
    flushed = np.full((plan.height, plan.width), np.nan)
    buffer = np.zeros((plan.height, plan.width))
    done = 0
    for r in range(plan.rows):
        for c in range(plan.cols):
            window = plan.window(r, c)
            raster, tile = window_slices(window, plan)
            assert raster[0].start >= done  # never writes into already-flushed rows
            buffer[raster] += window_weights(window, plan)[tile]
        now = finished_rows(plan, r)
        flushed[done:now] = buffer[done:now]
        done = now
    np.testing.assert_array_equal(flushed, full)


# --------------------------------------------------------------------------- seeds


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**70), 2**70), st.integers(-(10**7), 10**7), st.integers(-(10**7), 10**7))
def test_window_seed_deterministic_and_in_range(seed: int, row: int, col: int) -> None:
    value = window_seed(seed, row, col)
    assert isinstance(value, int) and 0 <= value < SEED_LIMIT == 2**63
    assert window_seed(seed, row, col) == value
    assert window_seed(np.int64(seed % 2**62), np.int32(row % 2**30), col) == window_seed(
        seed % 2**62, row % 2**30, col
    )


@FAST
@given(st.integers(0, 2**64), st.integers(0, 2**64), st.integers(0, 10**6), st.integers(0, 10**6))
def test_window_seed_differs_for_different_inputs(seed_a: int, seed_b: int, row: int, col: int) -> None:
    if seed_a != seed_b:
        assert window_seed(seed_a, row, col) != window_seed(seed_b, row, col)
    assert window_seed(seed_a, row, col) != window_seed(seed_a, row + 128, col)
    assert window_seed(seed_a, row, col) != window_seed(seed_a, row, col + 128)
    if row != col:
        assert window_seed(seed_a, row, col) != window_seed(seed_a, col, row)


def test_window_seed_known_value_and_no_collisions() -> None:
    # Pinned so an accidental change of the hash (and of every render) fails loudly.
    assert window_seed(1, 0, 0) == 443109299391103960
    seeds = {window_seed(s, r * 128, c * 128) for s in (0, 1, 42) for r in range(64) for c in range(64)}
    assert len(seeds) == 3 * 64 * 64


@st.composite
def plan_and_area(draw: st.DrawFn) -> tuple[WindowPlan, tuple[int, int, int, int]]:
    plan = plan_windows(**draw(plan_params(max_windows=None)))
    row, col = draw(st.integers(0, plan.height - 1)), draw(st.integers(0, plan.width - 1))
    height, width = draw(st.integers(1, plan.height - row)), draw(st.integers(1, plan.width - col))
    return plan, (row, col, height, width)


@settings(max_examples=200, deadline=None)
@given(plan_and_area())
def test_covering_is_exactly_the_windows_touching_an_area(case: tuple) -> None:
    """A part of the raster is rendered with the whole raster's windows (so their weights and seeds) that touch it."""
    plan, (row, col, height, width) = case
    rows, cols = plan.covering(row, col, height, width)
    touching_rows = [r for r, o in enumerate(plan.row_offsets) if o < row + height and o + plan.tile_px > row]
    touching_cols = [c for c, o in enumerate(plan.col_offsets) if o < col + width and o + plan.tile_px > col]
    assert list(rows) == touching_rows and list(cols) == touching_cols
    assert plan.covering(0, 0, plan.height, plan.width) == (range(plan.rows), range(plan.cols))


def test_sub_area_reuses_the_full_plans_windows_and_seeds() -> None:
    full = plan_windows(3000, 2500, 256, 128)
    rows, cols = full.covering(1280, 640, 700, 900)
    assert (rows, cols) == (range(9, 16), range(4, 13))  # offsets 1152..1920 and 512..1536
    sub_windows = [full.window(r, c) for r in rows for c in cols]
    assert {(w.row_off, w.col_off) for w in sub_windows} <= {(w.row_off, w.col_off) for w in full}
    assert len({window_seed(7, w.row_off, w.col_off) for w in sub_windows}) == len(sub_windows)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile_px": 256, "overlap_px": 300}, r"^overlap_px=300 must be >= 0 and < tile_px=256$"),
        ({"tile_px": 256, "overlap_px": 256}, r"^overlap_px=256 must be >= 0 and < tile_px=256$"),
        ({"tile_px": 64, "overlap_px": -2}, r"^overlap_px=-2 must be >= 0 and < tile_px=64$"),
        ({"tile_px": 0, "overlap_px": 0}, r"^tile_px=0 must be a positive number of pixels$"),
        ({"height": 0}, r"^raster size 0x100 \(height x width\) must be at least 1x1 pixels$"),
        ({"width": -5}, r"^raster size 100x-5 \(height x width\) must be at least 1x1 pixels$"),
        ({"height": 2.5}, r"^height=2.5 must be an integer$"),
        ({"tile_px": True}, r"^tile_px=True must be an integer, not a bool$"),
        ({"overlap_px": "64"}, r"^overlap_px='64' must be an integer$"),
    ],
)
def test_plan_validation_messages(kwargs: dict, message: str) -> None:
    params = {"height": 100, "width": 100, **kwargs}
    with pytest.raises(SatgenError, match=message) as info:
        plan_windows(**params)
    assert "\n" not in str(info.value)


def test_other_validation() -> None:
    plan = plan_windows(600, 600)
    other = plan_windows(600, 600, 64, 32)
    with pytest.raises(SatgenError, match="is not a window of this 4x4 plan"):
        window_weights(other.window(3, 3), plan)
    with pytest.raises(SatgenError, match="not a window"):
        window_slices(TileWindow(5, 0, 256, 0, 0, 0), plan)
    with pytest.raises(SatgenError, match=r"^lattice_row=4 must be in -1\.\.3$"):
        finished_rows(plan, 4)
    with pytest.raises(SatgenError, match=r"^lattice_row=-1 must be in 0\.\.3$"):
        band_rows(plan, -1)
    with pytest.raises(SatgenError, match="outside the 4x4 window plan"):
        plan.window(4, 0)
    with pytest.raises(SatgenError, match=r"^seed=1\.0 must be an integer$") as info:
        window_seed(1.0, 0, 0)  # type: ignore[arg-type]
    assert info.value.param == "seed"
    with pytest.raises(SatgenError, match=r"^area of 100x1 px at \(550, 0\) is not inside the 600x600 px raster$") as info:
        plan.covering(550, 0, 100, 1)
    assert info.value.param == "region"
    with pytest.raises(SatgenError, match="not inside"):
        plan.covering(0, -1, 1, 1)
    with pytest.raises(IndexError):
        plan[16]
