"""Inference backends: torch, OpenVINO and ONNX Runtime rendering real mask GeoTIFFs, and the converted-model cache.

Every render here runs the real engine on a tiny ``UNetGenerator(features=8)`` checkpoint and
reads the GeoTIFF it wrote back with rasterio; OpenVINO and ONNX Runtime are the real packages
(the dev extra installs both), and the missing-extra case runs the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from satgen_geo import convert
from satgen_geo.engine import RenderConfig, RenderResult, render
from satgen_geo.errors import ConfigError, MissingDependencyError, OutputError
from satgen_geo.model import ModelSpec, UNetGenerator, save_generator
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.precision import cpu_info, psnr
from tests.conftest import ROOT, run_cli

ORIGIN = from_origin(500_000.0, 6_710_000.0, 1.0, 1.0)  # EPSG:32635, 1 m pixels, north-up
SEED = 3
#: Largest difference (grey levels) and lowest PSNR (dB, peak 255) of an fp32 backend against torch fp32.
#: A graph run at bf16 by mistake (OpenVINO's default on CPUs with AMX) measures 7-8 levels and ~48 dB.
FP32_MAX_DIFF, FP32_MIN_PSNR = 2, 60.0
#: Lowest PSNR of a bf16 render against torch fp32 (measured ~48 dB stochastic, ~53 dB deterministic).
BF16_MIN_PSNR = 40.0
FP32_BACKENDS = ("torch", "openvino", "onnxruntime")
CONVERTED = ("openvino", "onnxruntime")


# --------------------------------------------------------------------------- helpers


def _write_mask(path: Path, size: int, seed: int = 0) -> Path:
    """A ``size`` × ``size`` two-band mask GeoTIFF: two roads and scattered buildings."""
    rng = np.random.default_rng(seed)
    data = np.zeros((2, size, size), dtype=np.uint8)
    data[0, size // 3 : size // 3 + 12, :] = 255
    data[0, :, size // 5 : size // 5 + 9] = 255
    for _ in range(size * size // 12_000 + 4):
        r, c = rng.integers(0, size - 20, 2)
        data[1, r : r + 15, c : c + 20] = 255
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=2, dtype="uint8", crs="EPSG:32635",
                       transform=ORIGIN, tiled=True, blockxsize=256, blockysize=256) as ds:
        ds.write(data)
    return path


def _read(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.tags()


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def _entries(cache: Path) -> list[str]:
    """The converted-model folders in ``cache`` (temporary ``.partial`` folders included)."""
    compiled = cache / "compiled"
    return sorted(p.name for p in compiled.iterdir()) if compiled.is_dir() else []


Render = Callable[..., tuple[np.ndarray, dict[str, str]]]


@pytest.fixture(scope="module")
def model(tiny_checkpoint: Path) -> LoadedModel:
    return load_model(tiny_checkpoint, "cpu")


@pytest.fixture(scope="module")
def mask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """512 × 512 px: 9 windows, so the default batch of 8 runs one full and one padded call."""
    return _write_mask(tmp_path_factory.mktemp("mask") / "mask.tif", 512)


@pytest.fixture(scope="module")
def rendered(model: LoadedModel, mask: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """``rendered(backend, precision, **config)``: the pixels and tags of that render of ``mask``, made once."""
    out = tmp_path_factory.mktemp("renders")
    done: dict[tuple, tuple[np.ndarray, dict[str, str]]] = {}

    def run(backend: str, precision: str, region: Window | None = None, **config: object) -> tuple[np.ndarray, dict[str, str]]:
        config = {"seed": SEED, **config}
        key = (backend, precision, str(region), tuple(sorted(config.items())))
        if key not in done:
            path = out / f"r{len(done)}.tif"
            result = render(mask, path, model, RenderConfig(backend=backend, precision=precision, overviews=False, **config),
                            region=region)
            assert (result.backend, result.precision) == (backend, precision)
            done[key] = _read(path)
        return done[key]

    return run


# --------------------------------------------------------------------------- every backend at fp32


@pytest.mark.parametrize("deterministic", [False, True], ids=["stochastic", "deterministic"])
@pytest.mark.parametrize("backend", CONVERTED)
def test_fp32_backend_matches_torch(rendered: Render, backend: str, deterministic: bool) -> None:
    reference, _ = rendered("torch", "fp32", deterministic=deterministic)
    pixels, tags = rendered(backend, "fp32", deterministic=deterministic)
    assert (tags["BACKEND"], tags["PRECISION"]) == (backend, "fp32")
    diff, db = _max_diff(pixels, reference), psnr(pixels, reference, peak=255.0)
    print(f"{backend} fp32 {'deterministic' if deterministic else 'stochastic'} vs torch fp32: "
          f"max |Δ| {diff} grey levels, PSNR {db:.1f} dB")
    assert diff <= FP32_MAX_DIFF
    assert db >= FP32_MIN_PSNR


@pytest.mark.parametrize("backend", FP32_BACKENDS)
def test_same_seed_same_pixels_other_seed_other_pixels(rendered: Render, model: LoadedModel, mask: Path, tmp_path: Path,
                                                       backend: str) -> None:
    first, _ = rendered(backend, "fp32")
    config = RenderConfig(backend=backend, precision="fp32", seed=SEED, overviews=False)
    again, _ = _read(render(mask, tmp_path / "again.tif", model, config).path)
    other, _ = rendered(backend, "fp32", seed=SEED + 1)
    np.testing.assert_array_equal(again, first)
    assert np.abs(other.astype(np.int16) - first).mean() > 1.0


@pytest.mark.parametrize("backend", FP32_BACKENDS)
def test_dropout_masks_reach_the_network(rendered: Render, backend: str) -> None:
    """Without input noise the only randomness is dropout: it changes the image, and as torch's own dropout does."""
    no_noise = {"input_noise_std": 0.0, "empty_noise_std": 0.0}
    dropout_only, _ = rendered(backend, "fp32", **no_noise)
    plain, _ = rendered(backend, "fp32", deterministic=True)
    stochastic, _ = rendered(backend, "fp32")
    assert np.abs(dropout_only.astype(np.int16) - plain).mean() > 1.0
    assert np.abs(stochastic.astype(np.int16) - plain).mean() > 1.0
    torch_dropout, _ = rendered("torch", "fp32", **no_noise)
    assert _max_diff(dropout_only, torch_dropout) <= FP32_MAX_DIFF


@pytest.mark.parametrize("backend", FP32_BACKENDS)
def test_region_equals_the_same_pixels_of_a_full_render(rendered: Render, backend: str) -> None:
    region = Window(170, 90, 250, 300)
    full, _ = rendered(backend, "fp32")
    part, tags = rendered(backend, "fp32", region=region)
    assert part.shape == (3, 300, 250)
    assert tags["BACKEND"] == backend
    np.testing.assert_array_equal(part, full[:, 90:390, 170:420])


# --------------------------------------------------------------------------- bf16


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_bf16_close_to_fp32_and_tagged(rendered: Render, backend: str) -> None:
    reference, _ = rendered("torch", "fp32")
    pixels, tags = rendered(backend, "bf16")
    assert (tags["BACKEND"], tags["PRECISION"]) == (backend, "bf16")
    db = psnr(pixels, reference, peak=255.0)
    print(f"{backend} bf16 stochastic vs torch fp32: max |Δ| {_max_diff(pixels, reference)} grey levels, PSNR {db:.1f} dB")
    assert db >= BF16_MIN_PSNR
    if backend == "torch" or cpu_info().native_bf16:  # OpenVINO computes in fp32 where the CPU lacks bf16
        assert db < FP32_MIN_PSNR, "a bf16 render should not be as close to fp32 as an fp32 one"


# --------------------------------------------------------------------------- int8 (preview)


def test_int8_is_an_openvino_preview_that_says_so(rendered: Render, model: LoadedModel, mask: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Quantized on conversion: the same seed gives the same pixels, clearly unlike fp32's, and the tag says preview."""
    reference, _ = rendered("torch", "fp32")
    with caplog.at_level(logging.WARNING, logger="satgen_geo.backends"):
        pixels, tags = rendered("openvino", "int8")
    assert tags["PRECISION"] == "int8 (preview)" and "preview" in caplog.text
    again, _ = _read(render(mask, tmp_path / "again.tif", model,
                            RenderConfig(backend="auto", precision="int8", seed=SEED, overviews=False)).path)
    np.testing.assert_array_equal(again, pixels)  # auto backend + int8 resolves to OpenVINO
    db = psnr(pixels, reference, peak=255.0)
    print(f"openvino int8 vs torch fp32: PSNR {db:.1f} dB")
    assert 12.0 < db < BF16_MIN_PSNR  # related to fp32's image, and visibly not it
    with pytest.raises(ConfigError, match="not int8") as caught:
        render(mask, tmp_path / "x.tif", model, RenderConfig(backend="torch", precision="int8"))
    assert caught.value.param == "precision" and not (tmp_path / "x.tif").exists()


def test_tags_name_the_window_lattice_the_seam_score_reads(rendered: Render, mask: Path, tmp_path: Path) -> None:
    _, tags = rendered("torch", "fp32", overlap_px=64)
    assert (tags["TILE_PX"], tags["OVERLAP_PX"]) == ("256", "64")


# --------------------------------------------------------------------------- converted-model cache


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder of this test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SATGEN_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def small_mask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 × 300 px: 4 windows."""
    return _write_mask(tmp_path_factory.mktemp("small") / "small.tif", 300, seed=1)


def _render_small(small_mask: Path, model: LoadedModel, out: Path, backend: str = "onnxruntime",
                  precision: str = "fp32", **config: object) -> RenderResult:
    return render(small_mask, out, model, RenderConfig(backend=backend, precision=precision, overviews=False, **config))


def test_cache_built_once_then_reused(cache: Path, small_mask: Path, model: LoadedModel, tmp_path: Path) -> None:
    _render_small(small_mask, model, tmp_path / "a.tif", batch_size=2)
    entries = _entries(cache)
    assert len(entries) == 1 and not entries[0].startswith(".")
    folder = cache / "compiled" / entries[0]
    assert sorted(p.name for p in folder.iterdir()) == ["key.json", "model.onnx"]
    key = json.loads((folder / "key.json").read_text())
    assert (key["backend"], key["precision"], key["shape"], key["sha256"]) == ("onnxruntime", "fp32", [2, 2, 256, 256],
                                                                               model.sha256)
    built = (folder / "model.onnx").stat().st_mtime_ns
    month_ago = time.time() - 20 * 86400
    os.utime(folder, (month_ago, month_ago))

    _render_small(small_mask, model, tmp_path / "b.tif", batch_size=2)
    assert _entries(cache) == entries
    assert (folder / "model.onnx").stat().st_mtime_ns == built
    assert folder.stat().st_mtime > time.time() - 600, "a reused entry counts as used (it is not pruned as stale)"
    np.testing.assert_array_equal(_read(tmp_path / "a.tif")[0], _read(tmp_path / "b.tif")[0])


def test_each_part_of_the_key_makes_its_own_entry(cache: Path, small_mask: Path, model: LoadedModel, tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    save_generator(UNetGenerator(features=8), ModelSpec(features=8, name="other"), other)
    runs = [
        ("first", model, {"batch_size": 2}),
        ("batch size", model, {"batch_size": 1}),
        ("deterministic", model, {"batch_size": 2, "deterministic": True}),
        ("checkpoint", load_model(other, "cpu"), {"batch_size": 2}),
    ]
    for count, (what, run_model, config) in enumerate(runs, start=1):
        _render_small(small_mask, run_model, tmp_path / "out.tif", **config)
        entries = _entries(cache)
        assert len(entries) == count, f"{what}: {entries}"
        assert not [name for name in entries if name.endswith(".partial")], what


def test_openvino_precisions_share_one_converted_graph(rendered: Render, model: LoadedModel) -> None:
    """OpenVINO's precision is a compile setting: its fp32 and bf16 renders (same model, shape, dropout) use one entry."""
    rendered("openvino", "fp32")
    rendered("openvino", "bf16")
    compiled = Path(os.environ["SATGEN_CACHE_DIR"]) / "compiled"
    entries = []
    for key_file in compiled.glob("*/key.json"):
        key = json.loads(key_file.read_text())
        if (key["sha256"], key["backend"], key["shape"], key["dropout"]) == (model.sha256, "openvino", [8, 2, 256, 256], True):
            entries.append(key["precision"])
    assert [p for p in entries if p != "int8"] == ["any"]  # int8 is a graph of its own (quantized)


def test_build_prunes_stale_entries_and_partials(cache: Path, small_mask: Path, model: LoadedModel, tmp_path: Path) -> None:
    compiled = cache / "compiled"
    day = 86400
    ages = {  # name -> age in days
        "old-entry": convert.CACHE_DAYS + 1, "young-entry": convert.CACHE_DAYS - 1,
        ".abc.1-dead.partial": 2, ".abc.2-busy.partial": 0.5,
    }
    for name, days in ages.items():
        (compiled / name).mkdir(parents=True)
        (compiled / name / "model.onnx").write_bytes(b"x")
        stamp = time.time() - days * day
        os.utime(compiled / name, (stamp, stamp))

    _render_small(small_mask, model, tmp_path / "out.tif", batch_size=1)
    left = _entries(cache)
    assert "old-entry" not in left and ".abc.1-dead.partial" not in left
    assert "young-entry" in left and ".abc.2-busy.partial" in left
    assert len(left) == 3  # the two kept and the new one


def test_cache_that_is_a_file_is_one_line_output_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_mask: Path,
                                                       model: LoadedModel) -> None:
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("not a folder")
    monkeypatch.setenv("SATGEN_CACHE_DIR", str(not_a_folder))
    out = tmp_path / "out.tif"
    with pytest.raises(OutputError) as caught:
        _render_small(small_mask, model, out)
    message = str(caught.value)
    assert "\n" not in message and "SATGEN_CACHE_DIR" in message and str(not_a_folder) in message
    assert caught.value.param == "cache"
    assert not out.exists()
    assert not_a_folder.read_text() == "not a folder"


@contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only: a read-only bind mount as root (root ignores permissions), else no write permission."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")] if path.is_dir()}
        for path in modes:
            path.chmod(0o555)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_cache_is_one_line_output_error(cache: Path, small_mask: Path, model: LoadedModel, tmp_path: Path) -> None:
    cache.mkdir()
    with _read_only(cache), pytest.raises(OutputError) as caught:
        _render_small(small_mask, model, tmp_path / "out.tif")
    assert "\n" not in str(caught.value) and "SATGEN_CACHE_DIR" in str(caught.value) and caught.value.param == "cache"
    assert not (tmp_path / "out.tif").exists()


def test_read_only_cache_with_the_entry_built_is_used(cache: Path, small_mask: Path, model: LoadedModel,
                                                      tmp_path: Path) -> None:
    """A cache filled beforehand and then shared read-only (a container image, a network share) still serves its graphs."""
    _render_small(small_mask, model, tmp_path / "a.tif")
    with _read_only(cache):
        _render_small(small_mask, model, tmp_path / "b.tif")
    np.testing.assert_array_equal(_read(tmp_path / "a.tif")[0], _read(tmp_path / "b.tif")[0])


# --------------------------------------------------------------------------- missing extras


def test_missing_onnx_exporter_names_the_extra(cache: Path, small_mask: Path, model: LoadedModel, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # onnxruntime present, its exporter's onnx package not
    with pytest.raises(MissingDependencyError) as caught:
        _render_small(small_mask, model, tmp_path / "out.tif")
    assert "pip install 'satgen-geo[onnx]'" in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.param == "backend"
    assert not (tmp_path / "out.tif").exists()
    assert not [name for name in _entries(cache) if name.endswith(".partial")]


def test_cli_without_openvino_fails_naming_the_extra(small_mask: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    code = "import sys; sys.modules['openvino'] = None; from satgen_geo.cli import main; sys.argv[0] = 'satgen'; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "render", str(small_mask), "-o", str(out), "--backend", "openvino",
         "--checkpoint", str(tiny_checkpoint), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "pip install 'satgen-geo[openvino]'" in errors[0] and errors[0].endswith("(--backend)"), errors[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_render_on_onnxruntime(small_mask: Path, tiny_checkpoint: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "out.tif"
    result = run_cli("render", small_mask, "-o", out, "--backend", "onnxruntime", "--precision", "fp32",
                     "--checkpoint", tiny_checkpoint, "--device", "cpu", "--seed", "5")
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"wrote {out}") and last.endswith("onnxruntime fp32)"), last
    pixels, tags = _read(out)
    assert (tags["BACKEND"], tags["PRECISION"], tags["SEED"]) == ("onnxruntime", "fp32", "5")
    assert pixels.shape == (3, 300, 300) and pixels.std() > 1.0
    # the CLI's pixels are the library's (within the rounding of another thread count)
    same = _read(_render_small(small_mask, load_model(tiny_checkpoint, "cpu"), tmp_path / "lib.tif", seed=5).path)[0]
    assert _max_diff(pixels, same) <= FP32_MAX_DIFF
