"""The streaming render engine: real mask GeoTIFFs in, real RGB GeoTIFFs out, read back with rasterio.

Every model here is a tiny ``UNetGenerator(features=8)`` saved as safetensors and loaded with
``load_model``, so the whole pipeline (checkpoint → engine → GeoTIFF) runs as a user runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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

from satgen_geo import engine
from satgen_geo.engine import RenderConfig, render
from satgen_geo.errors import CancelledError, CRSError, InputFileError, SatgenError
from satgen_geo.geotiff import BLOCK_PX
from satgen_geo.mask import MaskSource, build_mask
from satgen_geo.model import ModelSpec, UNetGenerator, save_generator
from satgen_geo.model.checkpoint import file_sha256
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.tiling import plan_windows, window_slices, window_weights
from tests.conftest import SAMPLE_AOI, SAMPLE_PBF

FEATURES = 8
ORIGIN = from_origin(500_000.0, 6_710_000.0, 1.0, 1.0)  # EPSG:32635, 1 m pixels, north-up
#: What a model whose last layer is tanh(0.5) everywhere writes, if the blend weights sum to 1.
FLAT_VALUE = int(np.rint((np.tanh(np.float32(0.5)) + 1.0) * 127.5))


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


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: fast on a busy 2-core machine (no OpenMP spinning), same pixels every run."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine_data")


@pytest.fixture(scope="module")
def tiny_path(data_dir: Path) -> Path:
    return _save_tiny(data_dir / "tiny.safetensors", "tiny-test", seed=1)


@pytest.fixture(scope="module")
def tiny(tiny_path: Path) -> LoadedModel:
    return load_model(tiny_path, "cpu")


@pytest.fixture(scope="module")
def flat(data_dir: Path) -> LoadedModel:
    return load_model(_save_tiny(data_dir / "flat.safetensors", "flat", constant=0.5), "cpu")


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
    assert (result.grid.width, result.grid.height) == (700, 530) and result.device == "cpu"
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
        "cpu",
    )
    mask = _write_raster(tmp_path / "m.tif", _synthetic_mask(height, width))
    render(mask, tmp_path / "o.tif", model, RenderConfig(overlap_px=overlap, batch_size=8, seed=9))
    rgb = _read(tmp_path / "o.tif")
    assert rgb.shape == (3, height, width)
    for edge in (rgb[:, 0, :], rgb[:, -1, :], rgb[:, :, 0], rgb[:, :, -1]):
        assert (edge == FLAT_VALUE).all(), np.unique(edge)
    assert np.unique(rgb).tolist() == [FLAT_VALUE]


def test_constant_model_region_at_odd_offsets(small_mask: Path, flat: LoadedModel, tmp_path: Path) -> None:
    region = Window(123, 77, 301, 257)
    render(small_mask, tmp_path / "o.tif", flat, RenderConfig(overlap_px=200, batch_size=8), region=region)
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
    with _torch_threads(2):
        render(mask, out, model, RenderConfig(seed=21, batch_size=batch_size), region=region)
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


class _RecordingJob(engine._Job):
    """The real job, also blending every window into a full-size array the naive way."""

    instances: list[_RecordingJob] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.mask = self.src.read()
        self.reference = np.zeros((3, self.plan.height, self.plan.width), dtype=np.float32)  # whole raster
        self.buffer_shapes: set[tuple[int, ...]] = set()
        self.accumulated: list[int] = []
        self.flushes: list[tuple[int, int, int]] = []  # (row, rows, windows accumulated so far)
        self.writes: list[tuple[int, int]] = []
        self.bad_inputs: list[int] = []
        self.inputs = 0
        type(self).instances.append(self)

    def _windows(self, io):  # noqa: ANN001, ANN202
        tile = self.plan.tile_px
        for window, patch in super()._windows(io):
            expected = np.zeros((2, tile, tile), dtype=np.uint8)
            rows = self.mask[:, window.row_off : window.row_off + tile, window.col_off : window.col_off + tile]
            expected[:, : rows.shape[1], : rows.shape[2]] = rows
            if patch.shape != expected.shape or not np.array_equal(patch, expected):
                self.bad_inputs.append(window.index)
            self.inputs += 1
            yield window, patch

    def _accumulate(self, window, rgb) -> None:  # noqa: ANN001
        super()._accumulate(window, rgb)
        self.buffer_shapes.add(self.buffer.shape)
        raster, tile = window_slices(window, self.plan)
        weights = window_weights(window, self.plan)
        self.reference[:, raster[0], raster[1]] += rgb[:, tile[0], tile[1]] * weights[tile]
        self.accumulated.append(window.index)

    def _flush(self, last_window, everything):  # noqa: ANN001, ANN202
        for row, rgb in super()._flush(last_window, everything):
            self.flushes.append((row, rgb.shape[1], len(self.accumulated)))
            yield row, rgb

    def _write(self, dst, row, rgb) -> None:  # noqa: ANN001
        super()._write(dst, row, rgb)
        self.writes.append((row, rgb.shape[1]))


def test_streaming_render_2048(tmp_path: Path, tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    size = 2048
    data = _synthetic_mask(size, size, seed=3)
    data[0, :, 1500:1510] = 255
    mask = _write_raster(tmp_path / "m.tif", data)
    _RecordingJob.instances = []
    monkeypatch.setattr(engine, "_Job", _RecordingJob)
    render(mask, tmp_path / "o.tif", tiny, RenderConfig(seed=11, batch_size=8))
    (job,) = _RecordingJob.instances
    plan = job.plan
    assert (plan.rows, plan.cols) == (15, 15)
    # every window once, fed the mask under it (zero beyond the edge)
    assert sorted(job.accumulated) == list(range(len(plan)))
    assert job.inputs == len(plan) and job.bad_inputs == []
    # the rolling buffer never grows: one GeoTIFF block of rows plus the lattice rows a batch spans
    # (a batch of 8 of the 15 windows per lattice row touches at most 2 lattice rows)
    assert job.buffer_shapes == {(3, BLOCK_PX + 2 * plan.stride + plan.tile_px, size)}
    # rows leave in whole 256-row blocks, in order, as soon as no later window touches them
    assert [(r, n) for r, n, _ in job.flushes] == [(r, BLOCK_PX) for r in range(0, size, BLOCK_PX)]
    assert sorted(job.writes) == [(r, BLOCK_PX) for r in range(0, size, BLOCK_PX)]
    for row, n, done in job.flushes:
        needed = sum(o < row + n for o in plan.row_offsets) * plan.cols
        at_most = sum(o < row + n + plan.tile_px for o in plan.row_offsets) * plan.cols
        assert needed <= done <= at_most, (row, done)
    assert job.flushes[0][2] <= 3 * plan.cols  # the first block is written after 3 of 15 lattice rows
    # the streamed file equals blending the same window outputs in one full-size array
    expected = np.clip(np.rint((job.reference + 1.0) * 127.5), 0, 255).astype(np.uint8)
    rgb = _read(tmp_path / "o.tif")
    assert rgb.std() > 5
    np.testing.assert_array_equal(rgb, expected)


def test_wide_raster_renders_in_strips_with_the_same_pixels(
    mask_900: Path, tiny: LoadedModel, full_900: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _RecordingJob.instances = []
    monkeypatch.setattr(engine, "_Job", _RecordingJob)
    ticks: list[tuple[int, int, str]] = []
    result = render(mask_900, tmp_path / "o.tif", tiny, RenderConfig(seed=21, batch_size=1, strip_px=256),
                    progress=lambda d, t, s: ticks.append((d, t, s)))
    np.testing.assert_array_equal(_read(tmp_path / "o.tif"), full_900)
    jobs = _RecordingJob.instances
    assert [(job.c0, job.dst_col, job.width) for job in jobs] == [(0, 0, 256), (256, 256, 256), (512, 512, 256), (768, 768, 132)]
    assert all(job.inputs == job.total and job.bad_inputs == [] for job in jobs)
    assert {shape[2] for job in jobs for shape in job.buffer_shapes} == {256, 132}  # never the raster's 900
    assert all(job.buffer.size == 0 for job in jobs)  # each strip's buffer is freed before the next one
    plan = plan_windows(700, 900, 256, 128)
    assert (plan.rows, plan.cols) == (5, 7)
    # the windows on each of the three strip borders are computed twice: one per lattice row
    assert result.windows == sum(job.total for job in jobs) == len(plan) + 3 * plan.rows
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
    with pytest.raises(SatgenError, match="multiple of 256"):
        render(small_mask, tmp_path / "o.tif", tiny, RenderConfig(strip_px=strip_px))  # type: ignore[arg-type]
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
    assert len(calls) == 3 and ticks == [4, 8]
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
def test_bad_mask_file(tmp_path: Path, tiny: LoadedModel, make, error: type, fragment: str) -> None:  # noqa: ANN001
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
    ("config", "region", "fragment"),
    [
        (RenderConfig(), Window(600, 0, 200, 100), "not inside"),  # runs past the right edge
        (RenderConfig(), Window(0, 500, 100, 31), "not inside"),  # runs past the bottom edge
        (RenderConfig(), Window(-1, 0, 100, 100), "not inside"),
        (RenderConfig(), Window(0, 0, 0, 100), "not inside"),
        (RenderConfig(), Window(700, 0, 1, 1), "not inside"),
        (RenderConfig(precision="fp64"), None, "precision"),
        (RenderConfig(overlap_px=256), None, "overlap_px"),
        (RenderConfig(overlap_px=-1), None, "overlap_px"),
        (RenderConfig(batch_size=0), None, "batch"),
    ],
    ids=["right", "bottom", "negative", "empty", "outside", "precision", "overlap-tile", "overlap-negative", "batch-0"],
)
def test_bad_options(small_mask: Path, tiny: LoadedModel, tmp_path: Path, config: RenderConfig, region, fragment: str) -> None:  # noqa: ANN001
    try:
        render(small_mask, tmp_path / "o.tif", tiny, config, region=region)
    except SatgenError as err:
        assert fragment in str(err) and len(str(err).splitlines()) == 1
    except Exception as err:  # noqa: BLE001 - anything else is the bug being tested for
        raise AssertionError(f"expected a SatgenError, got {type(err).__name__}: {err}") from None
    else:
        raise AssertionError("no error raised")
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- channel order


def test_channel_order_from_the_spec_is_honoured(tmp_path: Path) -> None:
    """Same weights, opposite channel_order: (buildings, roads) on a mask == (roads, buildings) on it swapped."""
    roads_first = load_model(_save_tiny(tmp_path / "rb.safetensors", "rb", seed=7), "cpu")
    buildings_first = load_model(
        _save_tiny(tmp_path / "br.safetensors", "br", seed=7, channel_order=("buildings", "roads")), "cpu"
    )
    assert buildings_first.spec.channel_order == ("buildings", "roads")
    data = _synthetic_mask(530, 700, seed=4)
    assert not np.array_equal(data[0], data[1])
    mask = _write_raster(tmp_path / "m.tif", data)
    swapped = _write_raster(tmp_path / "swapped.tif", data[::-1].copy())
    config = RenderConfig(seed=6, batch_size=8)
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
