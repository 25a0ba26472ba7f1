"""Hostile and broken checkpoint files: a lying spec, fake tensors, blocked pickles, truncation.

Every file here is real (``torch.save``, ``safetensors``, ``pickle``); memory is measured
as the peak resident size of a fresh Python process that loads the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from satgen_geo.errors import CheckpointError, DeviceError
from satgen_geo.model import (
    SPEC_METADATA_KEY,
    ModelSpec,
    UNetGenerator,
    count_parameters,
    describe_checkpoint,
    load_generator,
    save_generator,
)
from satgen_geo.model.generator import state_shapes
from satgen_geo.model.loaded import load_model, resolve_device
from tests.conftest import run_cli

FEATURES = 8
#: Largest accepted growth of peak memory while a hostile file is rejected.
MAX_PEAK_DELTA_MB = 200

_PEAK_SCRIPT = """
import json, resource, sys
from satgen_geo.errors import CheckpointError
from satgen_geo.model import describe_checkpoint, load_generator
results = {}
for call, path in zip(sys.argv[1::2], sys.argv[2::2]):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        {"load": load_generator, "info": describe_checkpoint}[call](path)
        error = None
    except CheckpointError as exc:
        error = str(exc)
    delta_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    results[call + " " + path] = [error, delta_mb]
print(json.dumps(results))
"""


def _peak_memory(calls: list[tuple[str, Path]]) -> dict[str, tuple[str | None, float]]:
    """Run ``load``/``info`` on each file in one fresh process: {call path: (error, peak growth MB)}."""
    args = [str(a) for call in calls for a in call]
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {key: (error, delta) for key, (error, delta) in json.loads(done.stdout).items()}


def _tiny_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.contiguous() for k, v in UNetGenerator(features=FEATURES).state_dict().items()}


def _lying_safetensors(path: Path, **spec_changes: object) -> Path:
    """A real features=8 generator (3.4 MB) whose stored spec says something else."""
    spec = json.loads(ModelSpec(features=FEATURES, name="liar").to_json()) | spec_changes
    save_file(_tiny_tensors(), str(path), metadata={SPEC_METADATA_KEY: json.dumps(spec), "format": "pt"})
    return path


def _broadcast(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Tensors of the given shapes, each a stride-0 view of one stored value."""
    return {key: torch.zeros(1).expand(shape) for key, shape in shapes.items()}


# --- item 5: a spec or a file cannot control memory ----------------------------------------------------


def test_lying_safetensors_specs_are_rejected_before_any_allocation(tmp_path: Path) -> None:
    huge = _lying_safetensors(tmp_path / "huge.safetensors", features=1_000_000)
    wide = _lying_safetensors(tmp_path / "wide.safetensors", features=192)
    tiles = _lying_safetensors(tmp_path / "tiles.safetensors", tile_px=65536)
    assert huge.stat().st_size < 4_000_000
    started = time.perf_counter()
    results = _peak_memory([(call, p) for p in (huge, wide, tiles) for call in ("load", "info")])
    for (error, delta_mb), expected in zip(
        results.values(),
        [r"'features' must be a whole number from 1 to 512, got 1000000"] * 2
        + [r"'initial_down\.0\.weight' has shape \(8, 2, 4, 4\) but the generator expects \(192, 2, 4, 4\)"] * 2
        + [r"'tile_px' must be a whole number from 256 to 4096, a multiple of 256, got 65536"] * 2,
        strict=True,
    ):
        assert error is not None and "\n" not in error
        assert re.search(expected, error), error
        assert delta_mb < MAX_PEAK_DELTA_MB, (error, delta_mb)
    assert time.perf_counter() - started < 120


def test_satgen_info_on_a_lying_spec_is_one_error_line(tmp_path: Path) -> None:
    for path, words in (
        (_lying_safetensors(tmp_path / "huge.safetensors", features=1_000_000), "from 1 to 512"),
        (_lying_safetensors(tmp_path / "wide.safetensors", features=192), "expects (192, 2, 4, 4)"),
    ):
        result = run_cli("info", str(path), timeout=120)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0], result.stderr
        assert result.stdout == ""


def test_broadcast_tensors_cannot_claim_a_huge_network(tmp_path: Path) -> None:
    """A few-KB torch.save of stride-0 views whose shapes claim 1,000,000 or 512 features."""
    huge, widest = tmp_path / "huge.pt", tmp_path / "widest.pth"
    # the first and last convolutions give the architecture: 1,000,000 features would be 128 TB
    torch.save(_broadcast({"initial_down.0.weight": (1_000_000, 2, 4, 4), "final.0.weight": (2_000_000, 3, 4, 4)}), huge)
    widest_state = _broadcast(state_shapes(2, 3, 512))  # every key, in bounds: 14 GB if materialised
    torch.save({"generator_state_dict": widest_state, "config": {"generator_features": 512}}, widest)
    assert huge.stat().st_size < 100_000 and widest.stat().st_size < 100_000
    results = _peak_memory([("load", huge), ("info", huge), ("load", widest), ("info", widest)])
    for error, delta_mb in results.values():
        assert error is not None and "but the file holds only 1 of its values (a broadcast view)" in error, error
        assert delta_mb < MAX_PEAK_DELTA_MB, (error, delta_mb)


def test_lying_training_config_does_not_control_the_network(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "liar.pth"
    config = {"input_channels": 2, "output_channels": 3, "generator_features": 1_000_000}
    torch.save({"generator_state_dict": _tiny_tensors(), "config": config, "epoch": 1}, path)
    with caplog.at_level(logging.WARNING, logger="satgen_geo"):
        model, spec = load_generator(path)
    assert spec.features == FEATURES and model.features == FEATURES
    assert "config['generator_features'] = 1000000 but the weights have 8" in caplog.text
    ((error, delta_mb),) = _peak_memory([("load", path)]).values()
    assert error is None and delta_mb < MAX_PEAK_DELTA_MB


def test_info_counts_parameters_from_shapes_without_reading_tensor_data(tmp_path: Path) -> None:
    tensors = _tiny_tensors()
    tensors["up7.conv.bias"][0] = float("nan")  # only visible when the data is read
    path = tmp_path / "nan.safetensors"
    save_file(tensors, str(path), metadata={SPEC_METADATA_KEY: ModelSpec(features=FEATURES).to_json()})
    info = describe_checkpoint(path)
    assert info["parameter_count"] == count_parameters(UNetGenerator(features=FEATURES)) == 851_635
    with pytest.raises(CheckpointError, match=r"'up7\.conv\.bias' contains NaN"):
        load_generator(path)


def test_state_shapes_match_the_real_module_without_allocating() -> None:
    for args in ((2, 3, FEATURES), (3, 1, 4)):
        real = {k: tuple(v.shape) for k, v in UNetGenerator(*args).state_dict().items()}
        assert state_shapes(*args) == real
    for features in (64, 512):  # 512: about 14 GB of weights if they were allocated
        counted = sum(torch.Size(s).numel() for s in state_shapes(2, 3, features).values())
        assert counted == _unet_parameters(features)
    assert _unet_parameters(64) == 54_408_579  # SatGen-CV's published size


def _unet_parameters(f: int) -> int:
    """Parameters of the 4x4-conv U-Net with bias, from its layer widths (generator module docstring)."""
    down = [(2, f), (f, 2 * f), (2 * f, 4 * f), (4 * f, 8 * f)] + [(8 * f, 8 * f)] * 4
    up = [(8 * f, 8 * f)] + [(16 * f, 8 * f)] * 3 + [(16 * f, 4 * f), (8 * f, 2 * f), (4 * f, f), (2 * f, 3)]
    return sum(cin * cout * 16 + cout for cin, cout in down + up)


def test_loaded_weights_are_bit_identical_float32_parameters(tmp_path: Path) -> None:
    tensors = {k: v.to(torch.float16) for k, v in _tiny_tensors(seed=3).items()}
    torch.save(tensors, tmp_path / "half.pt")
    model, _ = load_generator(tmp_path / "half.pt")
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, tensors[key].float())
    assert all(p.requires_grad and p.is_leaf for p in model.parameters())
    assert not any(t.is_meta for t in model.state_dict().values())


def test_oversized_safetensors_header_is_refused(tmp_path: Path) -> None:
    path = _lying_safetensors(tmp_path / "big.safetensors", provenance={"notes": "x" * (5 << 20)})
    with pytest.raises(CheckpointError, match=r"header, over the limit of 4,194,304 bytes"):
        load_generator(path)


def test_generator_constructor_uses_the_shared_bounds() -> None:
    with pytest.raises(ValueError, match=r"generator features must be a whole number from 1 to 512, got 513") as info:
        UNetGenerator(features=513)
    assert info.value.param == "generator"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="generator in_channels"):
        UNetGenerator(in_channels=True)  # type: ignore[arg-type]


# --- issue 10 item 11: pickles are classified by exception type and file structure -------------------


class _Config:
    """A custom class: a pickle holding it must never be unpickled."""


def test_blocked_global_says_why_and_how_to_convert(tmp_path: Path) -> None:
    state = _tiny_tensors()
    zipped, legacy, raw = tmp_path / "zip.pth", tmp_path / "legacy.pth", tmp_path / "raw.pkl"
    torch.save({"generator_state_dict": state, "config": _Config()}, zipped)
    torch.save({"generator_state_dict": state, "config": _Config()}, legacy, _use_new_zipfile_serialization=False)
    raw.write_bytes(pickle.dumps({"generator_state_dict": state, "config": _Config()}, protocol=5))
    for path in (zipped, legacy, raw):
        with pytest.raises(CheckpointError) as info:
            load_generator(path)
        message = str(info.value)
        assert f"{__name__}._Config" in message, message
        assert "holds Python objects beyond tensors" in message and "for safety" in message
        assert "torch.load(weights_only=False)" in message and "state dict" in message and "\n" not in message
        assert info.value.param == "checkpoint"


def test_whole_module_pickle_names_its_class(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(UNetGenerator(features=FEATURES), path)
    with pytest.raises(CheckpointError, match=r"beyond tensors \(.*satgen_geo\.model\.generator\.UNetGenerator"):
        load_generator(path)


def test_truncated_torch_save_is_called_truncated(tmp_path: Path) -> None:
    full = tmp_path / "full.pt"
    torch.save(_tiny_tensors(), full)
    for keep in (full.stat().st_size // 2, 100):
        cut = tmp_path / f"cut{keep}.pt"
        cut.write_bytes(full.read_bytes()[:keep])
        with pytest.raises(CheckpointError, match=r"the file is truncated .*download or copy it again"):
            load_generator(cut)


# --- issue 10 item 13 and issue 11 item 3 -----------------------------------------------------------------


def test_model_hash_is_the_full_sha256(tmp_path: Path) -> None:
    path = save_generator(UNetGenerator(features=FEATURES), ModelSpec(features=FEATURES), tmp_path / "m.safetensors")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_model(path, "cpu").sha256 == describe_checkpoint(path)["sha256"] == digest
    assert len(digest) == 64


@pytest.mark.parametrize(("name", "words"), [("tpu", "unknown device 'tpu'"), ("cuda:x", "device 'cuda:x'")])
def test_device_problems_are_device_errors_naming_no_flag(name: str, words: str) -> None:
    if name.startswith("cuda") and torch.cuda.is_available():
        words = "unknown device 'cuda:x'"
    with pytest.raises(DeviceError, match=words) as info:
        resolve_device(name)
    assert info.value.param == "device" and "--" not in str(info.value)
    assert not isinstance(info.value, CheckpointError)


def test_checkpoint_errors_name_the_concept(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint file not found") as info:
        load_model(tmp_path / "missing.safetensors", "cpu")
    assert info.value.param == "checkpoint"
