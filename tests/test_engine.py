"""The streaming render engine: real mask GeoTIFFs in, real RGB GeoTIFFs out, read back with rasterio.

Every model here is a tiny ``UNetGenerator(features=8)`` saved as safetensors and loaded with
``load_model``, so the whole pipeline (checkpoint → engine → GeoTIFF) runs as a user runs it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import tracemalloc
from typing import Any
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.transform import Affine, from_origin
from rasterio.windows import Window

from satgen_geo.blend import buffer_rows, to_uint8
from satgen_geo.engine import (
    RenderConfig,
    WindowNetwork,
    max_overlap,
    read_band,
    render,
)
from satgen_geo.errors import (
    CancelledError,
    ConfigError,
    CRSError,
    InputFileError,
    LimitError,
    SatgenError,
)
from satgen_geo.geotiff import BLOCK_PX
from satgen_geo.mask import MaskSource, build_mask
from satgen_geo.model import ModelSpec, UNetGenerator, save_generator
from satgen_geo.model.checkpoint import file_sha256
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.network import inference_view
from satgen_geo.tiling import (
    TileWindow,
    plan_windows,
    window_seed,
    window_slices,
    window_weights,
)
from tests.conftest import SAMPLE_AOI, SAMPLE_PBF, torch_threads

FEATURES = 8
ORIGIN = from_origin(500_000.0, 6_710_000.0, 1.0, 1.0)  # EPSG:32635, 1 m pixels, north-up
#: What a model whose last layer is tanh(0.5) everywhere writes, if the blend weights sum to 1.
FLAT_VALUE = int(np.rint((np.tanh(np.float32(0.5)) + 1.0) * 127.5))
#: Where the models run: ``SATGEN_TEST_DEVICE=cuda`` runs these tests on a GPU (``benchmarks/gpu_check.sh``).
DEVICE = os.environ.get("SATGEN_TEST_DEVICE", "cpu")
#: The exact reference backend and precision, for tests that compare pixels with fp32 arithmetic.
EXACT: dict[str, Any] = {"backend": "torch", "precision": "fp32"}


# --------------------------------------------------------------------------- helpers


def _save_tiny(path: Path, name: str, *, seed: int = 0, constant: float | None = None, **spec: object) -> Path:
    """A random (or constant-output) features=8 generator saved as satgen safetensors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UNetGenerator(features=FEATURES)
    if constant is not None:
        with torch.no_grad():
            model.final[0].weight.zero_()
            model.final[0].bias.fill_(constant)
    return save_generator(model, ModelSpec(features=FEATURES, name=name, **spec), path)


def _write_raster(
    path: Path, data: np.ndarray, crs: str | None = "EPSG:32635", transform: Affine = ORIGIN, **tags: str
) -> Path:
    count, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
        crs=crs, transform=transform, tiled=True, blockxsize=256, blockysize=256,
    ) as ds:
        ds.write(data)
        if tags:
            ds.update_tags(**tags)
    return path


def _synthetic_mask(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Roads (band 1) and buildings (band 2), different in each band; the bottom-right is empty."""
    rng = np.random.default_rng(seed)
    data = np.zeros((2, height, width), dtype=np.uint8)
    data[0, height // 3 : height // 3 + 12, : width * 2 // 3] = 255
    data[0, : height * 2 // 3, width // 4 : width // 4 + 9] = 255
    for _ in range(max(8, height * width // 8000)):
        r, c = rng.integers(0, height // 2), rng.integers(0, width // 2)
        data[1, r : r + 15, c : c + 20] = 255
    return data


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _window_slice(data: np.ndarray, region: Window) -> np.ndarray:
    r, c = int(region.row_off), int(region.col_off)
    return data[:, r : r + int(region.height), c : c + int(region.width)]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: fast on a busy 2-core machine (no OpenMP spinning), same pixels every run."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine_data")


@pytest.fixture(scope="module")
def tiny_path(data_dir: Path) -> Path:
    return _save_tiny(data_dir / "tiny.safetensors", "tiny-test", seed=1)


@pytest.fixture(scope="module")
def tiny(tiny_path: Path) -> LoadedModel:
    return load_model(tiny_path, DEVICE)


@pytest.fixture(scope="module")
def flat(data_dir: Path) -> LoadedModel:
    return load_model(_save_tiny(data_dir / "flat.safetensors", "flat", constant=0.5), DEVICE)


@pytest.fixture(scope="module")
def small_mask(data_dir: Path) -> Path:
    """530 rows x 700 columns: the last lattice row and column run past the edge."""
    return _write_raster(data_dir / "small_mask.tif", _synthetic_mask(530, 700))


@pytest.fixture(scope="module")
def mask_900(data_dir: Path) -> Path:
    return _write_raster(data_dir / "mask_900x700.tif", _synthetic_mask(700, 900, seed=2))


@pytest.fixture(scope="module")
def aoi_mask(data_dir: Path) -> Path:
    """The real sample extract clipped to the sample AOI (~1.1 km); its UTM corners are masked."""
    return build_mask(data_dir / "aoi_mask.tif", MaskSource(osm=SAMPLE_PBF, aoi=SAMPLE_AOI)).path


@pytest.fixture(scope="module")
def aoi_render(data_dir: Path, aoi_mask: Path, tiny: LoadedModel) -> Path:
    out = data_dir / "aoi_render" / "rgb.tif"
    out.parent.mkdir()
    render(aoi_mask, out, tiny, RenderConfig(seed=5, batch_size=8))
    return out


# --------------------------------------------------------------------------- georeferencing and tags


def test_output_grid_bands_tags_overviews_and_mask(aoi_mask: Path, aoi_render: Path, tiny_path: Path) -> None:
    with rasterio.open(aoi_mask) as src, rasterio.open(aoi_render) as out:
        assert out.crs == src.crs and out.crs.to_epsg() == 32635
        assert out.transform == src.transform
        assert (out.width, out.height) == (src.width, src.height) == (1100, 1115)
        assert out.count == 3 and out.dtypes == ("uint8", "uint8", "uint8")
        assert out.descriptions == ("red", "green", "blue")
        assert out.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        rgb = out.read()
        assert rgb.std() > 5, "output is (nearly) constant"
        assert all(band.std() > 5 for band in rgb)
        tags, source_tags = out.tags(), src.tags()
        assert "synthetic" in tags["CONTENT"]
        assert tags["MODEL"] == "tiny-test"
        assert tags["MODEL_SHA256"] == file_sha256(tiny_path)
        assert tags["SEED"] == "5"
        assert "OpenStreetMap contributors" in source_tags["ATTRIBUTION"]
        assert tags["ATTRIBUTION"] == source_tags["ATTRIBUTION"]
        assert tags["SOURCE"] == source_tags["SOURCE"]
        assert out.overviews(1) == [2, 4]
        assert out.profile["tiled"] and out.compression is not None
        # the AOI's rotated corners are masked in the mask; the image carries that mask
        valid = src.dataset_mask()
        assert (valid == 0).any() and (valid == 255).mean() > 0.99
        assert all(MaskFlags.per_dataset in flags for flags in out.mask_flag_enums)
        np.testing.assert_array_equal(out.dataset_mask(), valid)


def test_result_and_progress(small_mask: Path, tiny: LoadedModel, tmp_path: Path) -> None:
    ticks: list[tuple[int, int, str]] = []
    result = render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(batch_size=4),
                    progress=lambda d, t, s: ticks.append((d, t, s)))
    plan = plan_windows(530, 700, 256, 128)
    assert result.path == tmp_path / "o.tif" and result.windows == len(plan) == 20
    assert (result.grid.width, result.grid.height) == (700, 530) and result.device.startswith(DEVICE)
    assert {s for _, _, s in ticks} == {"render"} and {t for _, t, _ in ticks} == {20}
    assert [d for d, _, _ in ticks] == [4, 8, 12, 16, 20]  # 20 windows in batches of 4, across lattice rows
    assert _leftovers(tmp_path) == ["o.tif"]


def test_without_source_mask_all_valid_and_no_overviews(small_mask: Path, tiny: LoadedModel, tmp_path: Path) -> None:
    render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(batch_size=8, overviews=False))
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.overviews(1) == []
        assert all(flags == [MaskFlags.all_valid] for flags in out.mask_flag_enums)
        assert "OpenStreetMap contributors" in out.tags()["ATTRIBUTION"]  # default when the mask has none
        assert out.tags()["SOURCE"] == "mask GeoTIFF"


# --------------------------------------------------------------------------- blend weights sum to 1


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [
        (530, 700, 256, 0),
        (530, 700, 256, 64),
        (530, 700, 256, 128),
        (530, 700, 256, 200),
        (257, 1001, 256, 128),
        (100, 130, 256, 128),  # smaller than one window
        (700, 530, 512, 300),  # 512 px tiles, overlap > tile / 2
    ],
)
def test_constant_model_gives_constant_image_no_black_border(
    tmp_path: Path, height: int, width: int, tile: int, overlap: int
) -> None:
    """With tanh(0.5) everywhere, any pixel whose blend weights do not sum to 1 shows."""
    model = load_model(
        _save_tiny(tmp_path / "flat.safetensors", "flat", constant=0.5, tile_px=tile, overlap_px=min(128, overlap)),
        DEVICE,
    )
    mask = _write_raster(tmp_path / "m.tif", _synthetic_mask(height, width))
    render(mask, tmp_path / "o.tif", model, RenderConfig(overlap_px=overlap, batch_size=8, seed=9, **EXACT))
    rgb = _read(tmp_path / "o.tif")
    assert rgb.shape == (3, height, width)
    for edge in (rgb[:, 0, :], rgb[:, -1, :], rgb[:, :, 0], rgb[:, :, -1]):
        assert (edge == FLAT_VALUE).all(), np.unique(edge)
    assert np.unique(rgb).tolist() == [FLAT_VALUE]


def test_constant_model_region_at_odd_offsets(small_mask: Path, flat: LoadedModel, tmp_path: Path) -> None:
    region = Window(123, 77, 301, 257)
    render(small_mask, tmp_path / "o.tif", flat, RenderConfig(overlap_px=200, batch_size=8, **EXACT), region=region)
    rgb = _read(tmp_path / "o.tif")
    assert rgb.shape == (3, 257, 301)
    assert np.unique(rgb).tolist() == [FLAT_VALUE]


# --------------------------------------------------------------------------- determinism


def test_seed_determinism(small_mask: Path, tiny: LoadedModel, tmp_path: Path) -> None:
    def run(name: str, **kw: object) -> np.ndarray:
        render(small_mask, tmp_path / name, tiny, RenderConfig(batch_size=8, **kw))
        return _read(tmp_path / name)

    a, a_again, b = run("a.tif", seed=3), run("a2.tif", seed=3), run("b.tif", seed=4)
    np.testing.assert_array_equal(a, a_again)
    assert (a != b).mean() > 0.1, "a different seed should change most pixels"
    d3, d4 = run("d3.tif", seed=3, deterministic=True), run("d4.tif", seed=4, deterministic=True)
    np.testing.assert_array_equal(d3, d4)
    assert (d3 != a).mean() > 0.1, "deterministic mode should differ from the stochastic render"
    # both noise sources are used: input noise everywhere, extra noise on empty windows (bottom right)
    assert (run("q.tif", seed=3, input_noise_std=0.0) != a).mean() > 0.1
    no_empty_noise = run("e.tif", seed=3, empty_noise_std=0.0)
    changed = (no_empty_noise != a).any(axis=0)
    assert changed[400:, 550:].mean() > 0.5 and not changed[:100, :100].any()
    with rasterio.open(tmp_path / "d4.tif") as ds:
        assert ds.tags()["SEED"] == "none (deterministic)"
    with rasterio.open(tmp_path / "b.tif") as ds:
        assert ds.tags()["SEED"] == "4"


# --------------------------------------------------------------------------- sub-areas

# Region renders run with batch_size=1 so that every window goes through the network alone in
# both renders: see test_region_equals_full_render_with_batches for what happens otherwise.


@pytest.fixture(scope="module")
def full_900(data_dir: Path, mask_900: Path, tiny: LoadedModel) -> np.ndarray:
    out = data_dir / "full_900.tif"
    render(mask_900, out, tiny, RenderConfig(seed=21, batch_size=1))
    return _read(out)


@pytest.mark.parametrize(
    "region",
    [
        Window(300, 200, 400, 300),
        Window(650, 450, 250, 250),  # touches the right and bottom edges
        Window(0, 0, 900, 129),  # full width, a band of rows ending mid-window
        Window(899, 699, 1, 1),  # the last pixel
    ],
    ids=["inner", "bottom-right", "top-band", "last-pixel"],
)
def test_region_equals_same_pixels_of_full_render(
    mask_900: Path, tiny: LoadedModel, full_900: np.ndarray, tmp_path: Path, region: Window
) -> None:
    out = tmp_path / "region.tif"
    result = render(mask_900, out, tiny, RenderConfig(seed=21, batch_size=1), region=region)
    with rasterio.open(mask_900) as src, rasterio.open(out) as ds:
        assert ds.transform == src.window_transform(region)
        assert ds.crs == src.crs
        assert (ds.width, ds.height) == (region.width, region.height)
        part = ds.read()
    assert result.grid.transform == src.window_transform(region)
    np.testing.assert_array_equal(part, _window_slice(full_900, region))


def test_region_carries_the_source_mask(aoi_mask: Path, tiny: LoadedModel, tmp_path: Path) -> None:
    region = Window(800, 815, 300, 300)  # bottom-right corner of the AOI: partly masked
    render(aoi_mask, tmp_path / "r.tif", tiny, RenderConfig(seed=5, batch_size=8), region=region)
    with rasterio.open(aoi_mask) as src, rasterio.open(tmp_path / "r.tif") as ds:
        expected = src.dataset_mask(window=region)
        assert (expected == 0).any() and (expected == 255).any()
        np.testing.assert_array_equal(ds.dataset_mask(), expected)
        assert ds.transform == src.window_transform(region)


_OVERLAPS = (0, 64, 128, 200)


@pytest.fixture(scope="module")
def full_renders(data_dir: Path, tiny: LoadedModel) -> dict[int, tuple[Path, np.ndarray]]:
    """One full render of a 450 x 600 mask per overlap (batch_size=1), for the property test."""
    mask = _write_raster(data_dir / "mask_600x450.tif", _synthetic_mask(450, 600, seed=5))
    renders = {}
    for overlap in _OVERLAPS:
        out = data_dir / f"full_600_{overlap}.tif"
        render(mask, out, tiny, RenderConfig(seed=8, batch_size=1, overlap_px=overlap))
        renders[overlap] = (mask, _read(out))
    return renders


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    overlap=st.sampled_from(_OVERLAPS),
    col=st.integers(0, 599),
    row=st.integers(0, 449),
    width=st.integers(1, 600),
    height=st.integers(1, 450),
)
def test_any_region_equals_full_render(
    full_renders: dict, tiny: LoadedModel, data_dir: Path, overlap: int, col: int, row: int, width: int, height: int
) -> None:
    mask, full = full_renders[overlap]
    region = Window(col, row, min(width, 600 - col), min(height, 450 - row))
    out = data_dir / "any_region.tif"
    render(mask, out, tiny, RenderConfig(seed=8, batch_size=1, overlap_px=overlap, overviews=False), region=region)
    np.testing.assert_array_equal(_read(out), _window_slice(full, region))


# --------------------------------------------------------------------------- batching

# With several intra-op threads, CPU convolutions split work by batch size, so a window's float
# output depends (at the 1e-6 level) on how many windows share its network call; a few pixels then
# round the other way. These tests run with 2 threads, where that shows on a 2-core CPU.


def _render_two_threads(mask: Path, out: Path, model: LoadedModel, batch_size: int, region: Window | None = None) -> np.ndarray:
    with torch_threads(2):
        render(mask, out, model, RenderConfig(seed=21, batch_size=batch_size, **EXACT), region=region)
    return _read(out)


@pytest.fixture(scope="module")
def batch1_two_threads(data_dir: Path, mask_900: Path, tiny: LoadedModel) -> np.ndarray:
    return _render_two_threads(mask_900, data_dir / "b1_two_threads.tif", tiny, 1)


@pytest.fixture(scope="module")
def batch7_two_threads(data_dir: Path, mask_900: Path, tiny: LoadedModel) -> np.ndarray:
    return _render_two_threads(mask_900, data_dir / "b7_two_threads.tif", tiny, 7)


def test_batch_size_changes_pixels_by_at_most_rounding(
    batch1_two_threads: np.ndarray, batch7_two_threads: np.ndarray
) -> None:
    """Different batch sizes are not bit-identical with >1 CPU thread (the convolution kernels
    split work by batch shape); they only move values across a rounding boundary."""
    diff = np.abs(batch7_two_threads.astype(int) - batch1_two_threads)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-4


def test_region_equals_full_render_with_batches(
    mask_900: Path, tiny: LoadedModel, batch7_two_threads: np.ndarray, tmp_path: Path
) -> None:
    region = Window(256, 0, 644, 700)  # drops lattice column 0: batches hold other windows, padded to 7
    part = _render_two_threads(mask_900, tmp_path / "part.tif", tiny, 7, region)
    np.testing.assert_array_equal(part, _window_slice(batch7_two_threads, region))


# --------------------------------------------------------------------------- streaming


def _window_mask(data: np.ndarray, window: TileWindow) -> np.ndarray:
    """The mask under ``window``, zero beyond the raster: what the network must be fed."""
    patch = np.zeros((2, window.size, window.size), dtype=np.uint8)
    rows = data[:, window.row_off : window.row_off + window.size, window.col_off : window.col_off + window.size]
    patch[:, : rows.shape[1], : rows.shape[2]] = rows
    return patch


def test_read_band_is_the_mask_under_each_window(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, (2, 530, 700), dtype=np.uint8)
    mask = _write_raster(tmp_path / "m.tif", data)
    plan = plan_windows(530, 700, 256, 128)
    with rasterio.open(mask) as src:
        for cols in (range(plan.cols), range(2, 4), range(plan.cols - 1, plan.cols)):
            for row in range(plan.rows):
                band = read_band(src, plan, row, cols)
                assert band.shape == (2, 256, plan.col_offsets[cols[-1]] - plan.col_offsets[cols[0]] + 256)
                for col in cols:
                    window = plan.window(row, col)
                    x = window.col_off - plan.col_offsets[cols[0]]
                    np.testing.assert_array_equal(band[:, :, x : x + 256], _window_mask(data, window))


def test_streaming_render_2048(tmp_path: Path, tiny: LoadedModel) -> None:
    """The streamed file equals blending the network's output for every window (fed the mask under it,
    in row-major batches of 8 padded with empty windows) in one raster-sized array."""
    size = 2048
    data = _synthetic_mask(size, size, seed=3)
    data[0, :, 1500:1510] = 255
    mask = _write_raster(tmp_path / "m.tif", data)
    config = RenderConfig(seed=11, batch_size=8)
    result = render(mask, tmp_path / "o.tif", tiny, config)
    plan = plan_windows(size, size, 256, 128)
    assert (plan.rows, plan.cols) == (15, 15) and result.windows == len(plan) and result.batch_size == 8
    network = WindowNetwork(tiny, config, 8)
    reference = np.zeros((3, size, size), dtype=np.float32)
    windows = list(plan)
    for start in range(0, len(windows), 8):
        batch = windows[start : start + 8]
        masks = np.zeros((8, 2, 256, 256), dtype=np.uint8)
        masks[: len(batch)] = [_window_mask(data, w) for w in batch]
        seeds = [window_seed(11, w.row_off, w.col_off) for w in batch] + [0] * (8 - len(batch))
        for window, rgb in zip(batch, network(masks, seeds)):
            raster, tile = window_slices(window, plan)
            reference[:, raster[0], raster[1]] += rgb[:, tile[0], tile[1]] * window_weights(window, plan)[tile]
    rgb = _read(tmp_path / "o.tif")
    assert rgb.std() > 5
    np.testing.assert_array_equal(rgb, to_uint8(reference))


def test_wide_raster_renders_in_strips_with_the_same_pixels(
    mask_900: Path, tiny: LoadedModel, full_900: np.ndarray, tmp_path: Path
) -> None:
    ticks: list[tuple[int, int, str]] = []
    plan = plan_windows(700, 900, 256, 128)
    assert (plan.rows, plan.cols) == (5, 7)
    tracemalloc.start()  # numpy's allocations: the blend buffers, not the network's
    try:
        result = render(mask_900, tmp_path / "o.tif", tiny, RenderConfig(seed=21, batch_size=1, strip_px=256),
                        progress=lambda d, t, s: ticks.append((d, t, s)))
        strips_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        render(mask_900, tmp_path / "one.tif", tiny, RenderConfig(seed=21, batch_size=1))
        one_pass_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(_read(tmp_path / "o.tif"), full_900)
    # four strips (256, 256, 256, 132 px), one at a time: never a buffer as wide as the raster's 900 px
    one_pass_buffer = 3 * buffer_rows(plan, plan.cols, 1, BLOCK_PX) * 900 * 4
    assert strips_peak < one_pass_buffer < one_pass_peak, (strips_peak, one_pass_buffer, one_pass_peak)
    # the windows on each of the three strip borders are computed twice: one per lattice row
    assert result.windows == len(plan) + 3 * plan.rows
    assert [d for d, _, _ in ticks] == list(range(1, result.windows + 1))
    assert {(t, s) for _, t, s in ticks} == {(result.windows, "render")}


def test_strips_carry_the_source_mask(aoi_mask: Path, aoi_render: Path, tiny: LoadedModel, tmp_path: Path) -> None:
    render(aoi_mask, tmp_path / "o.tif", tiny, RenderConfig(seed=5, batch_size=8, strip_px=512))
    with rasterio.open(tmp_path / "o.tif") as ds, rasterio.open(aoi_render) as whole:
        assert ds.width > 1024  # three strips
        np.testing.assert_array_equal(ds.read(), whole.read())
        np.testing.assert_array_equal(ds.dataset_mask(), whole.dataset_mask())


@pytest.mark.parametrize("strip_px", [0, 100, 300, True, 512.0])
def test_bad_strip_width(small_mask: Path, tiny: LoadedModel, tmp_path: Path, strip_px: object) -> None:
    with pytest.raises(SatgenError, match="multiple of 256") as info:
        render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(strip_px=strip_px))  # type: ignore[arg-type]
    assert info.value.param == "strip_px"
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- cancel


@pytest.mark.parametrize("cog", [False, True], ids=["gtiff", "cog"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_cancel_leaves_nothing(small_mask: Path, tiny: LoadedModel, tmp_path: Path, cog: bool, existing: bool) -> None:
    out = tmp_path / "out.tif"
    if existing:
        out.write_bytes(b"previous result")
    calls: list[int] = []
    ticks: list[int] = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(CancelledError, match="cancelled"):
        render(small_mask, out, tiny, RenderConfig(batch_size=4, cog=cog),
               progress=lambda d, t, s: ticks.append(d), cancel=cancel)
    assert len(calls) == 3 and ticks == [4]  # checked before each batch starts; blending runs one batch behind
    if existing:
        assert out.read_bytes() == b"previous result"
        assert _leftovers(tmp_path) == ["out.tif"]
    else:
        assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- COG


def test_cog_output(aoi_mask: Path, aoi_render: Path, tiny: LoadedModel, tmp_path: Path) -> None:
    out = tmp_path / "cog.tif"
    render(aoi_mask, out, tiny, RenderConfig(seed=5, batch_size=8, cog=True))
    assert _leftovers(tmp_path) == ["cog.tif"]
    with rasterio.open(out) as ds, rasterio.open(aoi_render) as plain, rasterio.open(aoi_mask) as src:
        assert ds.driver == "GTiff"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.profile["tiled"]
        assert ds.overviews(1)
        assert (ds.crs, ds.transform) == (src.crs, src.transform)
        assert ds.descriptions == ("red", "green", "blue")
        assert ds.tags()["MODEL"] == "tiny-test" and "synthetic" in ds.tags()["CONTENT"]
        np.testing.assert_array_equal(ds.read(), plain.read())
        np.testing.assert_array_equal(ds.dataset_mask(), src.dataset_mask())


def test_cog_without_overviews(small_mask: Path, tiny: LoadedModel, tmp_path: Path) -> None:
    render(small_mask, tmp_path / "cog.tif", tiny, RenderConfig(batch_size=8, cog=True, overviews=False))
    with rasterio.open(tmp_path / "cog.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.overviews(1) == []


# --------------------------------------------------------------------------- bad input


def _one_band(d: Path) -> Path:
    return _write_raster(d / "one.tif", _synthetic_mask(300, 300)[:1])


def _three_band(d: Path) -> Path:
    return _write_raster(d / "rgb.tif", np.zeros((3, 300, 300), dtype=np.uint8))


def _uint16(d: Path) -> Path:
    return _write_raster(d / "u16.tif", _synthetic_mask(300, 300).astype(np.uint16))


def _no_crs(d: Path) -> Path:
    return _write_raster(d / "nocrs.tif", _synthetic_mask(300, 300), crs=None)


def _rotated(d: Path) -> Path:
    return _write_raster(d / "rot.tif", _synthetic_mask(300, 300), transform=ORIGIN * Affine.rotation(10))


def _text(d: Path) -> Path:
    (d / "notes.tif").write_text("not a raster\n")
    return d / "notes.tif"


def _missing(d: Path) -> Path:
    return d / "missing.tif"


@pytest.mark.parametrize(
    ("make", "error", "fragment"),
    [
        (_one_band, InputFileError, "2 uint8 bands"),
        (_three_band, InputFileError, "2 uint8 bands"),
        (_uint16, InputFileError, "2 uint8 bands"),
        (_no_crs, CRSError, "no CRS"),
        (_rotated, InputFileError, "rotated"),
        (_text, InputFileError, "cannot read"),
        (_missing, InputFileError, "does not exist"),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_bad_mask_file(
    tmp_path: Path, tiny: LoadedModel, make: Callable[[Path], Path], error: type, fragment: str
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    mask = make(src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(error, match=fragment) as info:
        render(mask, out_dir / "o.tif", tiny)
    assert len(str(info.value).splitlines()) == 1
    assert _leftovers(out_dir) == []


@pytest.mark.parametrize(
    ("options", "region", "fragment", "param"),
    [
        ({}, Window(600, 0, 200, 100), "not inside", "region"),  # runs past the right edge
        ({}, Window(0, 500, 100, 31), "not inside", "region"),  # runs past the bottom edge
        ({}, Window(-1, 0, 100, 100), "not inside", "region"),
        ({}, Window(0, 0, 0, 100), "not inside", "region"),
        ({}, Window(700, 0, 1, 1), "not inside", "region"),
        ({"precision": "fp64"}, None, "precision", "precision"),
        ({"overlap_px": 256}, None, "overlap", "overlap_px"),
        ({"overlap_px": -1}, None, "overlap", "overlap_px"),
        ({"batch_size": 0}, None, "batch", "batch_size"),
    ],
    ids=["right", "bottom", "negative", "empty", "outside", "precision", "overlap-tile", "overlap-negative", "batch-0"],
)
def test_bad_options(
    small_mask: Path, tiny: LoadedModel, tmp_path: Path, options: dict, region: Window | None, fragment: str, param: str
) -> None:
    try:
        render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(**options), region=region)
    except SatgenError as err:
        assert fragment in str(err) and len(str(err).splitlines()) == 1
        assert err.param == param
    except Exception as err:  # noqa: BLE001 - anything else is the bug being tested for
        raise AssertionError(f"expected a SatgenError, got {type(err).__name__}: {err}") from None
    else:
        raise AssertionError("no error raised")
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- channel order


def test_channel_order_from_the_spec_is_honoured(tmp_path: Path) -> None:
    """Same weights, opposite channel_order: (buildings, roads) on a mask == (roads, buildings) on it swapped."""
    roads_first = load_model(_save_tiny(tmp_path / "rb.safetensors", "rb", seed=7), DEVICE)
    buildings_first = load_model(
        _save_tiny(tmp_path / "br.safetensors", "br", seed=7, channel_order=("buildings", "roads")), DEVICE
    )
    assert buildings_first.spec.channel_order == ("buildings", "roads")
    data = _synthetic_mask(530, 700, seed=4)
    assert not np.array_equal(data[0], data[1])
    mask = _write_raster(tmp_path / "m.tif", data)
    swapped = _write_raster(tmp_path / "swapped.tif", data[::-1].copy())
    config = RenderConfig(seed=6, batch_size=8, **EXACT)  # auto could calibrate the two checkpoints differently
    render(mask, tmp_path / "rb.tif", roads_first, config)
    render(mask, tmp_path / "br.tif", buildings_first, config)
    render(swapped, tmp_path / "rb_swapped.tif", roads_first, config)
    rb, br, rb_swapped = (_read(tmp_path / n) for n in ("rb.tif", "br.tif", "rb_swapped.tif"))
    assert (rb != br).mean() > 0.05
    np.testing.assert_array_equal(br, rb_swapped)


@pytest.mark.parametrize("batch_size", [32, 64])
def test_batches_larger_than_a_lattice_row(tmp_path: Path, tiny: LoadedModel, batch_size: int) -> None:
    """A batch spanning several lattice rows fits the rolling buffer; regions still match."""
    mask = _write_raster(tmp_path / "m.tif", _synthetic_mask(1024, 1024, seed=5))
    config = RenderConfig(batch_size=batch_size, overviews=False)
    render(mask, tmp_path / "full.tif", tiny, config)
    region = Window(300, 200, 500, 600)
    render(mask, tmp_path / "part.tif", tiny, config, region=region)
    full = _read(tmp_path / "full.tif")
    assert full.std() > 5
    np.testing.assert_array_equal(_read(tmp_path / "part.tif"), full[:, 200:800, 300:800])


# --------------------------------------------------------------------------- settings and limits


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"seed": "1"}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 1 << 64}, "seed"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": 8.0}, "batch_size"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"overlap_px": -1}, "overlap_px"),
        ({"overlap_px": "64"}, "overlap_px"),
        ({"precision": "fp64"}, "precision"),
        ({"input_noise_std": -0.1}, "input_noise_std"),
        ({"input_noise_std": float("nan")}, "input_noise_std"),
        ({"empty_noise_std": -1.0}, "empty_noise_std"),
        ({"empty_variance": float("inf")}, "empty_variance"),
        ({"strip_px": 300}, "strip_px"),
        ({"max_windows": 0}, "max_windows"),
    ],
    ids=lambda v: repr(v),
)
def test_render_config_validates_itself(options: dict, param: str) -> None:
    with pytest.raises(ConfigError) as info:
        RenderConfig(**options)
    assert info.value.param == param
    assert len(str(info.value).splitlines()) == 1 and "--" not in str(info.value)


def test_render_config_accepts_its_ranges_and_has_no_unread_fields() -> None:
    RenderConfig(seed=-(1 << 63), overlap_px=0, batch_size=64, input_noise_std=0.0, empty_noise_std=0.0, strip_px=256)
    RenderConfig(seed=(1 << 64) - 1, overlap_px=10_000, batch_size=1024, max_batch_size=1024)  # overlap: see check_work
    assert "device" not in {f.name for f in fields(RenderConfig)}
    with pytest.raises(TypeError):
        RenderConfig(device=DEVICE)  # type: ignore[call-arg]


def test_batch_size_over_the_limit_is_refused() -> None:
    with pytest.raises(LimitError, match="batch size 65 is over the limit of 64 windows per network call") as info:
        RenderConfig(batch_size=65)
    assert info.value.param == "batch_size" and "raise the batch size limit" in str(info.value)
    with pytest.raises(LimitError, match="over the limit of 128"):
        RenderConfig(batch_size=100_000, max_batch_size=128)


def test_overlap_over_the_range_is_refused_at_once(small_mask: Path, tiny: LoadedModel, tmp_path: Path) -> None:
    ticks: list[int] = []
    with pytest.raises(ConfigError, match="window overlap") as info:
        render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(overlap_px=255), progress=lambda d, t, s: ticks.append(d))
    assert info.value.param == "overlap_px" and "224" in str(info.value)
    assert ticks == [] and _leftovers(tmp_path) == []
    with pytest.raises(ConfigError, match="window overlap"):
        render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(overlap_px=max_overlap(256) + 1))
    result = render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(overlap_px=max_overlap(256)), region=Window(0, 0, 40, 40))
    assert result.windows == 4  # windows at 0 and 32 px on each axis touch the 40 px region


def test_window_limit_refused_before_the_output_exists(small_mask: Path, tiny: LoadedModel, tmp_path: Path) -> None:
    ticks: list[int] = []
    with pytest.raises(LimitError, match="needs 20 windows, over the limit of 19 windows") as info:
        render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(max_windows=19), progress=lambda d, t, s: ticks.append(d))
    assert info.value.param == "max_windows"
    assert ticks == [] and _leftovers(tmp_path) == []
    # the limit counts the windows a region render computes: the 4 touching a 256 px square at (0, 0)
    with pytest.raises(LimitError, match="a 256×256 px render at 128 px overlap needs 4 windows"):
        render(small_mask, tmp_path / "r.tif", tiny, RenderConfig(max_windows=3), region=Window(0, 0, 256, 256))
    assert render(small_mask, tmp_path / "r.tif", tiny, RenderConfig(max_windows=4), region=Window(0, 0, 256, 256)).windows == 4


def test_batch_is_capped_at_the_windows_of_the_mask(tmp_path: Path, tiny: LoadedModel) -> None:
    """batch_size=1024 on a 10 x 10 mask runs the network on one window, not 1024."""
    mask = _write_raster(tmp_path / "m.tif", _synthetic_mask(10, 10))
    seen: list[int] = []
    hook = tiny.generator.register_forward_pre_hook(lambda _module, args: seen.append(args[0].shape[0]))
    try:
        big = render(mask, tmp_path / "big.tif", tiny, RenderConfig(seed=4, batch_size=1024, max_batch_size=1024, **EXACT))
    finally:
        hook.remove()
    assert big.batch_size == 1 and seen == [1]
    one = render(mask, tmp_path / "one.tif", tiny, RenderConfig(seed=4, batch_size=1, **EXACT))
    assert one.batch_size == 1
    np.testing.assert_array_equal(_read(tmp_path / "big.tif"), _read(tmp_path / "one.tif"))


def test_region_equals_full_render_with_a_batch_over_the_regions_windows(
    mask_900: Path, tiny: LoadedModel, tmp_path: Path
) -> None:
    """The cap is the whole mask's 35 windows, not the region's 30: both renders run batches of 35."""
    region = Window(256, 0, 644, 700)
    full = render(mask_900, tmp_path / "full.tif", tiny, RenderConfig(seed=21, batch_size=64))
    assert full.batch_size == 35
    with torch_threads(2):
        render(mask_900, tmp_path / "full2.tif", tiny, RenderConfig(seed=21, batch_size=64))
        part = render(mask_900, tmp_path / "part.tif", tiny, RenderConfig(seed=21, batch_size=64), region=region)
    assert part.windows == 30 and part.batch_size == 35
    np.testing.assert_array_equal(_read(tmp_path / "part.tif"), _window_slice(_read(tmp_path / "full2.tif"), region))


# --------------------------------------------------------------------------- mask CRS and pixel size


def test_mask_in_degrees_is_refused(tmp_path: Path, tiny: LoadedModel) -> None:
    mask = _write_raster(tmp_path / "m.tif", _synthetic_mask(300, 300), crs="EPSG:4326",
                         transform=from_origin(26.9, 60.5, 1e-5, 1e-5))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CRSError, match="geographic CRS with pixels in degrees") as info:
        render(mask, out / "o.tif", tiny)
    assert info.value.param == "mask" and len(str(info.value).splitlines()) == 1
    assert _leftovers(out) == []


@pytest.mark.parametrize(("gsd", "warned"), [(1.0, False), (1.2, False), (0.8, False), (30.0, True), (0.7, True)])
def test_pixel_size_far_from_the_models_is_a_warning(
    tmp_path: Path, tiny: LoadedModel, caplog: pytest.LogCaptureFixture, gsd: float, warned: bool
) -> None:
    mask = _write_raster(tmp_path / "m.tif", _synthetic_mask(64, 64), transform=from_origin(500_000.0, 6_710_000.0, gsd, gsd))
    with caplog.at_level(logging.WARNING, logger="satgen_geo.engine"):
        render(mask, tmp_path / "o.tif", tiny, RenderConfig(overviews=False))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (tmp_path / "o.tif").is_file()
    if warned:
        assert len(warnings) == 1 and f"{gsd:.3g} × {gsd:.3g} m pixels" in warnings[0] and "1 m/px" in warnings[0]
    else:
        assert warnings == []


def test_model_sha256_tag_is_the_full_hash(small_mask: Path, tiny: LoadedModel, tiny_path: Path, tmp_path: Path) -> None:
    render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(overviews=False))
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.tags()["MODEL_SHA256"] == hashlib.sha256(tiny_path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the shared model


def _model_state(model: LoadedModel) -> list[object]:
    generator = model.generator
    tensors = [(t.data_ptr(), t.stride(), t.requires_grad) for t in [*generator.parameters(), *generator.buffers()]]
    return [generator.training, generator.mc_dropout, [m.training for m in generator.modules()], tensors]


def test_render_does_not_change_the_shared_model(tmp_path: Path, tiny_path: Path, small_mask: Path) -> None:
    model = load_model(tiny_path, DEVICE)
    model.generator.train()
    before = _model_state(model)
    layout = [(p.data_ptr(), p.stride()) for p in model.generator.parameters()]
    render(small_mask, tmp_path / "s.tif", model, RenderConfig(seed=3, batch_size=8))
    render(small_mask, tmp_path / "d.tif", model, RenderConfig(batch_size=8, deterministic=True))
    assert _model_state(model) == before
    assert [(p.data_ptr(), p.stride()) for p in model.generator.parameters()] == layout  # same tensors, same memory format


def test_loaded_weights_are_channels_last_so_each_render_shares_them(tiny_path: Path) -> None:
    model = load_model(tiny_path, DEVICE)
    convs = [p for p in model.generator.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    view = inference_view(model.generator, stochastic=True)
    assert [p.data_ptr() for p in view.parameters()] == [p.data_ptr() for p in model.generator.parameters()]


def test_concurrent_renders_of_one_model_keep_their_own_dropout_mode(
    tmp_path: Path, tiny: LoadedModel, small_mask: Path
) -> None:
    configs = {"stochastic": RenderConfig(seed=3, batch_size=4), "deterministic": RenderConfig(batch_size=4, deterministic=True)}
    for name, config in configs.items():
        render(small_mask, tmp_path / f"{name}-alone.tif", tiny, config)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            render(small_mask, tmp_path / f"{name}-together.tif", tiny, configs[name])
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(name,)) for name in configs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for name in configs:
        np.testing.assert_array_equal(_read(tmp_path / f"{name}-together.tif"), _read(tmp_path / f"{name}-alone.tif"))
