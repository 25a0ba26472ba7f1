"""Choosing the backend and precision: candidates per device and CPU, the cached calibration, PSNR, the CLI.

:func:`candidates` is a pure function of its arguments, tested with hand-made ``CpuInfo``;
:func:`choose` runs the real calibration (torch against the real OpenVINO) on a tiny
``UNetGenerator(features=8)`` checkpoint and keeps its decision in a real ``calibration.json``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from satgen_geo.backends import FP32_STEM, open_runner
from satgen_geo.convert import calibration_masks
from satgen_geo.engine import RenderConfig, render, resolve
from satgen_geo.errors import ConfigError, MissingDependencyError
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.network import inference_view
from satgen_geo.precision import CpuInfo, candidates, choose, cpu_info, psnr
from tests.conftest import run_cli

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a cuda device object needs no GPU
PLAIN = CpuInfo("Plain CPU", frozenset({"sse4_2", "avx2", "avx512f"}))
SHAPE = (1, 2, 256, 256)


def _with_flag(flag: str) -> CpuInfo:
    return CpuInfo("BF16 CPU", PLAIN.flags | {flag})


# --------------------------------------------------------------------------- candidates


def test_without_native_bf16_only_fp32_is_tried() -> None:
    assert candidates("auto", "auto", CPU, PLAIN) == [("torch", "fp32"), ("openvino", "fp32")]
    assert candidates("torch", "auto", CPU, PLAIN) == [("torch", "fp32")]
    assert candidates("openvino", "auto", CPU, PLAIN) == [("openvino", "fp32")]
    assert not PLAIN.native_bf16


@pytest.mark.parametrize("flag", ["amx_bf16", "avx512_bf16"])
def test_native_bf16_adds_bf16_after_fp32(flag: str) -> None:
    info = _with_flag(flag)
    assert info.native_bf16 and flag in info.describe()
    assert candidates("auto", "auto", CPU, info) == [("torch", "fp32"), ("openvino", "fp32"), ("torch", "bf16"),
                                                     ("openvino", "bf16")]
    assert candidates("torch", "auto", CPU, info) == [("torch", "fp32"), ("torch", "bf16")]
    assert candidates("onnxruntime", "auto", CPU, info) == [("onnxruntime", "fp32")]  # ONNX Runtime has no bf16 here


def test_without_openvino_auto_falls_back_to_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert candidates("auto", "fp32", CPU, PLAIN) == [("torch", "fp32"), ("onnxruntime", "fp32")]
    with pytest.raises(MissingDependencyError) as caught:
        candidates("openvino", "fp32", CPU, PLAIN)
    assert "pip install 'satgen-geo[openvino]'" in str(caught.value) and caught.value.param == "backend"


def test_cuda_is_torch_at_fp16_by_default() -> None:
    assert candidates("auto", "auto", CUDA, _with_flag("amx_bf16")) == [("torch", "fp16")]
    assert candidates("torch", "bf16", CUDA, PLAIN) == [("torch", "bf16")]
    assert candidates("auto", "fp32", CUDA, PLAIN) == [("torch", "fp32")]


@pytest.mark.parametrize(
    ("backend", "precision", "device", "param", "named"),
    [
        ("torch", "fp16", CPU, "precision", "fp16"),
        ("auto", "fp16", CPU, "precision", "fp16"),
        ("onnxruntime", "bf16", CPU, "precision", "bf16"),
        ("openvino", "fp16", CPU, "precision", "fp16"),
        ("openvino", "fp32", CUDA, "backend", "openvino"),
        ("onnxruntime", "auto", CUDA, "backend", "onnxruntime"),
    ],
)
def test_impossible_combination_is_a_config_error(backend: str, precision: str, device: torch.device, param: str,
                                                  named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        candidates(backend, precision, device, _with_flag("amx_bf16"))
    message = str(caught.value)
    assert caught.value.param == param
    assert named in message and "\n" not in message


def test_converted_backend_on_cuda_is_refused_by_choose(model: LoadedModel) -> None:
    view = inference_view(model.generator, stochastic=False)
    with pytest.raises(ConfigError) as caught:
        choose(view, model.sha256, CUDA, "onnxruntime", "auto", SHAPE, _inputs)
    assert caught.value.param == "backend" and "onnxruntime" in str(caught.value)


def test_cpu_info_reads_this_machine() -> None:
    info = cpu_info()
    assert info.model.strip()
    assert info.describe().startswith(info.model)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    flag_lines = [line for line in text.splitlines() if line.startswith("flags")]
    if flag_lines:
        flags = set(flag_lines[0].partition(":")[2].split())
        assert info.flags == flags
        assert info.native_bf16 == bool(flags & {"amx_bf16", "avx512_bf16"})


# --------------------------------------------------------------------------- psnr


def test_psnr() -> None:
    reference = np.linspace(-1, 1, 1000, dtype=np.float32).reshape(10, 100)
    assert psnr(reference, reference.copy()) == math.inf
    assert psnr(reference + 0.02, reference) == pytest.approx(10 * math.log10(4 / 0.02**2))  # 40 dB
    assert psnr(reference - 0.2, reference) == pytest.approx(20.0)
    grey = np.full((3, 8, 8), 100, dtype=np.uint8)
    assert psnr(grey + 5, grey, peak=255.0) == pytest.approx(20 * math.log10(255 / 5))  # no uint8 wrap-around


# --------------------------------------------------------------------------- choose and its calibration


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder for this module: converted graphs are built once, calibration.json is reset per test."""
    folder = tmp_path_factory.mktemp("precision-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SATGEN_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture
def calibration(cache: Path) -> Path:
    path = cache / "calibration.json"
    path.unlink(missing_ok=True)
    return path


@pytest.fixture(scope="module")
def model(tiny_checkpoint: Path) -> LoadedModel:
    return load_model(tiny_checkpoint, "cpu")


def _inputs(masks: np.ndarray, seeds: list[int]) -> tuple[torch.Tensor, None]:
    """A deterministic network's inputs (what WindowNetwork.inputs gives without noise)."""
    return torch.from_numpy(masks).float() / 127.5 - 1.0, None


def _choose(model: LoadedModel, backend: str = "auto", precision: str = "fp32"):  # noqa: ANN202
    return choose(inference_view(model.generator, stochastic=False), model.sha256, CPU, backend, precision, SHAPE, _inputs)


def test_calibration_is_written_then_reused(calibration: Path, model: LoadedModel, tmp_path: Path) -> None:
    first, runner = _choose(model)
    assert first.reason.startswith("calibrated on") and "(cached calibration)" not in first.reason
    assert (first.backend, first.precision) in [("torch", "fp32"), ("openvino", "fp32")]
    assert (runner.backend, runner.precision) == (first.backend, first.precision)
    decisions = json.loads(calibration.read_text())
    assert len(decisions) == 1
    (key, decision), = decisions.items()
    assert decision["pick"] == [first.backend, first.precision]

    second, runner = _choose(model)
    assert (second.backend, second.precision) == (first.backend, first.precision)
    assert second.reason == first.reason + " (cached calibration)"
    assert runner.backend == first.backend

    # the file really decides: plant the other candidate, and choose, resolve() and a render all follow it
    other = "torch" if first.backend == "openvino" else "openvino"
    calibration.write_text(json.dumps({key: {"pick": [other, "fp32"], "reason": "planted"}}))
    planted, runner = _choose(model)
    assert (planted.backend, planted.precision, planted.reason) == (other, "fp32", "planted (cached calibration)")
    assert runner.backend == other
    config = RenderConfig(backend="auto", precision="fp32", deterministic=True, batch_size=SHAPE[0], overviews=False)
    resolved = resolve(model, config)
    assert (resolved.backend, resolved.precision) == (other, "fp32")
    mask = _write_mask(tmp_path / "mask.tif")
    result = render(mask, tmp_path / "out.tif", model, config)
    with rasterio.open(result.path) as ds:
        assert (ds.tags()["BACKEND"], ds.tags()["PRECISION"]) == (other, "fp32")
    assert json.loads(calibration.read_text())[key]["pick"] == [other, "fp32"]


@pytest.mark.parametrize("content", ["{\"truncated", "[1, 2, 3]", ""], ids=["invalid", "not-an-object", "empty"])
def test_corrupt_calibration_is_ignored(calibration: Path, model: LoadedModel, content: str) -> None:
    calibration.write_text(content)
    choice, _ = _choose(model)
    assert choice.reason.startswith("calibrated on")
    decisions = json.loads(calibration.read_text())
    assert [d["pick"] for d in decisions.values()] == [[choice.backend, choice.precision]]


def test_corrupt_calibration_entry_is_ignored(calibration: Path, model: LoadedModel) -> None:
    """A calibration.json that parses but whose entry for this key is not a decision (an older or damaged file)."""
    _choose(model)
    key, = json.loads(calibration.read_text())
    calibration.write_text(json.dumps({key: "damaged"}))
    choice, _ = _choose(model)
    assert choice.reason.startswith("calibrated on")
    assert json.loads(calibration.read_text())[key]["pick"] == [choice.backend, choice.precision]


def test_a_candidate_below_the_psnr_floor_is_never_chosen(calibration: Path, model: LoadedModel,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With the floor above any finite PSNR only the fp32 reference (identical to itself: inf dB) may win."""
    monkeypatch.setattr("satgen_geo.precision.cpu_info", lambda: CpuInfo("test CPU", frozenset({"amx_bf16"})))
    monkeypatch.setattr("satgen_geo.precision.MIN_PSNR_DB", 1000.0)
    choice, runner = _choose(model, "torch", "auto")
    assert (choice.backend, choice.precision) == ("torch", "fp32") and runner.precision == "fp32"
    assert "torch bf16" in choice.reason and " dB" in choice.reason  # bf16 was measured, and refused


def test_autocast_runs_the_stem_in_fp32(model: LoadedModel) -> None:
    """bf16 weights everywhere but in the input stem, whose fp32 weights are the model's own values."""
    view = inference_view(model.generator, stochastic=True)
    runner = open_runner(view, model.sha256, CPU, "torch", "bf16", SHAPE)
    for name in FP32_STEM:
        for ours, theirs in zip(getattr(runner.view, name).parameters(), getattr(view, name).parameters(), strict=True):
            assert ours.dtype == torch.float32 and torch.equal(ours, theirs)
    assert {p.dtype for n, p in runner.view.named_parameters() if n.split(".")[0] not in FP32_STEM} == {torch.bfloat16}
    x = torch.from_numpy(calibration_masks(SHAPE)).float() / 127.5 - 1.0
    masks = view.dropout_masks(range(SHAPE[0]), *SHAPE[2:])
    reference = open_runner(view, model.sha256, CPU, "torch", "fp32", SHAPE)(x, masks)
    assert 40.0 < psnr(runner(x, masks), reference) < math.inf


def test_explicit_pair_writes_no_calibration(calibration: Path, model: LoadedModel) -> None:
    choice, runner = _choose(model, "torch", "fp32")
    assert (choice.backend, choice.precision, choice.reason) == ("torch", "fp32", "as requested")
    assert (runner.backend, runner.precision) == ("torch", "fp32")
    assert not calibration.exists()


# --------------------------------------------------------------------------- CLI


def _write_mask(path: Path, size: int = 300) -> Path:
    data = np.zeros((2, size, size), dtype=np.uint8)
    data[0, size // 2 : size // 2 + 10, :] = 255
    data[1, 40:70, 60:100] = 255
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=2, dtype="uint8", crs="EPSG:32635",
                       transform=from_origin(500_000.0, 6_710_000.0, 1.0, 1.0)) as ds:
        ds.write(data)
    return path


def test_cli_fp16_on_cpu_is_one_line_error(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mask = _write_mask(tmp_path / "mask.tif")
    out = tmp_path / "out" / "out.tif"
    out.parent.mkdir()
    result = run_cli("render", mask, "-o", out, "--precision", "fp16", "--checkpoint", tiny_checkpoint, "--device", "cpu")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "fp16" in errors[0] and errors[0].endswith("(--precision)"), errors[0]
    assert list(out.parent.iterdir()) == []
