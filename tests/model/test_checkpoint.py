"""Tests for checkpoint loading (three formats), safetensors saving and errors."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from satgen_geo.errors import CheckpointError, DeviceError, SatgenError
from satgen_geo.model import (
    ModelSpec,
    UNetGenerator,
    count_parameters,
    describe_checkpoint,
    load_generator,
    save_generator,
)

FEATURES = 8


# --- an independent replica of the SatGen-CV training-time module structure -------------------
# Written from the original's description (github.com/Guereak/SatGen-CV, src/models/generator.py):
# blocks hold conv / bn / relu / dropout attributes (dropout instantiated even when unused),
# the ends are nn.Sequential, convs keep their default bias, InstanceNorm2d keeps its defaults.


class _RefBlock(nn.Module):
    def __init__(self, cin: int, cout: int, up: bool, dropout: bool) -> None:
        super().__init__()
        conv = nn.ConvTranspose2d if up else nn.Conv2d
        self.conv = conv(cin, cout, 4, 2, 1)
        self.bn = nn.InstanceNorm2d(cout)
        self.relu = nn.ReLU() if up else nn.LeakyReLU(0.2)
        self.use_dropout = dropout
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return self.dropout(x) if self.use_dropout else x


class _RefGenerator(nn.Module):
    def __init__(self, in_channels: int = 2, out_channels: int = 3, features: int = 64) -> None:
        super().__init__()
        f = features
        self.initial_down = nn.Sequential(nn.Conv2d(in_channels, f, 4, 2, 1), nn.LeakyReLU(0.2))
        widths = [f, 2 * f, 4 * f, 8 * f, 8 * f, 8 * f, 8 * f]
        for i in range(6):
            setattr(self, f"down{i + 1}", _RefBlock(widths[i], widths[i + 1], up=False, dropout=False))
        self.bottleneck = nn.Sequential(nn.Conv2d(8 * f, 8 * f, 4, 2, 1), nn.LeakyReLU(0.2))
        ups = [
            (8 * f, 8 * f),
            (16 * f, 8 * f),
            (16 * f, 8 * f),
            (16 * f, 8 * f),
            (16 * f, 4 * f),
            (8 * f, 2 * f),
            (4 * f, f),
        ]
        for i, (cin, cout) in enumerate(ups):
            setattr(self, f"up{i + 1}", _RefBlock(cin, cout, up=True, dropout=i < 3))
        self.final = nn.Sequential(nn.ConvTranspose2d(2 * f, out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.initial_down(x)]
        for i in range(1, 7):
            skips.append(getattr(self, f"down{i}")(skips[-1]))
        u = self.bottleneck(skips[-1])
        for i in range(1, 8):
            u = getattr(self, f"up{i}")(u if i == 1 else torch.cat((u, skips[8 - i]), dim=1))
        return self.final(torch.cat((u, skips[0]), dim=1))


def _reference(in_channels: int = 2, out_channels: int = 3, seed: int = 0) -> _RefGenerator:
    torch.manual_seed(seed)
    return _RefGenerator(in_channels, out_channels, FEATURES).eval()


def _masks(n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (torch.rand(n, 2, 256, 256, generator=g) > 0.6).float() * 2 - 1


def _training_checkpoint(ref: nn.Module) -> dict:
    """What SatGen-CV's Pix2PixTrainer.save_checkpoint writes."""
    disc = nn.Sequential(nn.Conv2d(5, 4, 4, 2, 1), nn.BatchNorm2d(4))
    return {
        "epoch": 3,
        "global_step": 120,
        "generator_state_dict": ref.state_dict(),
        "discriminator_state_dict": disc.state_dict(),
        "optimizer_G_state_dict": torch.optim.Adam(ref.parameters(), lr=2e-4, betas=(0.5, 0.999)).state_dict(),
        "optimizer_D_state_dict": torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999)).state_dict(),
        "config": {
            "input_channels": 2,
            "output_channels": 3,
            "generator_features": FEATURES,
            "discriminator_features": [64, 128, 256, 512],
            "num_epochs": 200,
            "lr_generator": 0.0002,
            "lambda_l1": 100,
            "checkpoint_dir": "checkpoints",
            "log_dir": "runs/pix2pix_20250101_000000",
        },
    }


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


# --- the three formats -------------------------------------------------------------------------


def test_original_training_checkpoint_loads_strict_and_matches(tmp_path: Path) -> None:
    ref = _reference()
    path = tmp_path / "best_model.pth"
    torch.save(_training_checkpoint(ref), path)
    model, spec = load_generator(path)
    assert isinstance(model, UNetGenerator)
    assert (spec.in_channels, spec.out_channels, spec.features) == (2, 3, FEATURES)
    assert spec.name == "best_model"
    assert isinstance(spec.provenance, dict)
    assert spec.provenance["epoch"] == 3 and spec.provenance["source"] == "SatGen-CV training checkpoint"
    assert not any(m.training for m in model.modules())
    x = _masks()
    assert torch.equal(_outputs(model, x), _outputs(ref, x))


def test_bare_state_dict_loads_and_matches(tmp_path: Path) -> None:
    ref = _reference(seed=5)
    path = tmp_path / "generator.pt"
    torch.save(ref.state_dict(), path)
    model, spec = load_generator(path)
    assert spec.features == FEATURES
    x = _masks()
    assert torch.equal(_outputs(model, x), _outputs(ref, x))
    assert describe_checkpoint(path)["format"] == "state-dict"


def test_dataparallel_prefix_is_stripped(tmp_path: Path) -> None:
    ref = _reference()
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, path)
    model, _ = load_generator(path)
    assert torch.equal(model.state_dict()["final.0.bias"], ref.state_dict()["final.0.bias"])


def test_safetensors_round_trip_keeps_spec_and_outputs(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = UNetGenerator(features=FEATURES).eval()
    spec = ModelSpec(
        features=FEATURES,
        channel_order=("buildings", "roads"),
        gsd_m=0.5,
        overlap_px=64,
        name="test-model",
        provenance={"source": "unit test", "epoch": 9},
    )
    path = save_generator(model, spec, tmp_path / "model.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]  # no temp file left behind
    loaded, loaded_spec = load_generator(path)
    assert loaded_spec == spec
    x = _masks()
    assert torch.equal(_outputs(loaded, x), _outputs(model, x))
    renamed = tmp_path / "model.bin"  # detected by content, not by suffix
    renamed.write_bytes(path.read_bytes())
    assert load_generator(renamed)[1] == spec


def test_save_overwrites_atomically_and_checks_spec(tmp_path: Path) -> None:
    model = UNetGenerator(features=FEATURES)
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"old")
    save_generator(model, ModelSpec(features=FEATURES), path)
    assert load_generator(path)[1].features == FEATURES
    with pytest.raises(CheckpointError, match=r"spec describes .* \(2, 3, 16\)"):
        save_generator(model, ModelSpec(features=16), path)
    with pytest.raises(SatgenError, match="does not exist"):
        save_generator(model, ModelSpec(features=FEATURES), tmp_path / "no" / "such" / "dir.safetensors")


def test_describe_checkpoint(tmp_path: Path) -> None:
    model = UNetGenerator(features=FEATURES)
    path = save_generator(model, ModelSpec(features=FEATURES, name="tiny"), tmp_path / "tiny.safetensors")
    info = describe_checkpoint(path)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # the full 64 hex digits
    assert info["parameter_count"] == count_parameters(model)
    assert (
        info["name"] == "tiny" and info["format"] == "safetensors" and info["channel_order"] == ["roads", "buildings"]
    )
    json.dumps(info)  # ready for `satgen info --json`


# --- mismatches ----------------------------------------------------------------------------------


def test_wrong_shape_names_key_and_shapes(tmp_path: Path) -> None:
    sd = _reference().state_dict()
    sd["down3.conv.weight"] = torch.zeros(64, 32, 3, 3)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(
        CheckpointError,
        match=r"'down3\.conv\.weight' has shape \(64, 32, 3, 3\) but the generator expects \(64, 32, 4, 4\)",
    ):
        load_generator(tmp_path / "bad.pt")


def test_missing_keys_are_named(tmp_path: Path) -> None:
    sd = _reference().state_dict()
    del sd["up4.conv.weight"], sd["up4.conv.bias"]
    torch.save({"generator_state_dict": sd, "config": {}}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys up4\.conv\.weight, up4\.conv\.bias") as info:
        load_generator(tmp_path / "bad.pth")
    assert "\n" not in str(info.value)


def test_batchnorm_era_checkpoint_is_explained(tmp_path: Path) -> None:
    sd = dict(_reference().state_dict())
    for i in range(1, 7):
        for stat in ("weight", "bias", "running_mean", "running_var"):
            sd[f"down{i}.bn.{stat}"] = torch.ones(sd[f"down{i}.conv.bias"].shape)
    torch.save(sd, tmp_path / "bn.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys down1\.bn\.weight.*\(\+\d+ more\).*BatchNorm"):
        load_generator(tmp_path / "bn.pt")


def test_three_channel_input_is_rejected(tmp_path: Path) -> None:
    torch.save(_reference(in_channels=3).state_dict(), tmp_path / "rgb_in.pt")
    with pytest.raises(
        CheckpointError, match=r"checkpoint has 3 input channels; satgen masks have 2 \(roads, buildings\)"
    ):
        load_generator(tmp_path / "rgb_in.pt")


def test_wrong_output_channels_rejected(tmp_path: Path) -> None:
    torch.save(_reference(out_channels=1).state_dict(), tmp_path / "gray.pt")
    with pytest.raises(CheckpointError, match="produces 1 output channels"):
        load_generator(tmp_path / "gray.pt")


def test_foreign_channel_order_rejected(tmp_path: Path) -> None:
    spec = ModelSpec(features=FEATURES, channel_order=("water", "roads"))
    path = save_generator(UNetGenerator(features=FEATURES), spec, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"\['water', 'roads'\]"):
        load_generator(path)


def test_non_finite_weights_rejected(tmp_path: Path) -> None:
    sd = _reference().state_dict()
    sd["up7.conv.bias"][0] = float("nan")
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"'up7\.conv\.bias' contains NaN"):
        load_generator(tmp_path / "nan.pt")


# --- unreadable files ------------------------------------------------------------------------------


class _Config:
    """A custom class: a pickle holding it must never be unpickled."""


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_pickle_with_custom_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "custom.pth"
    torch.save({"generator_state_dict": _reference().state_dict(), "config": _Config()}, path)
    with pytest.raises(CheckpointError, match=r"refused by weights_only loading.*_Config"):
        load_generator(path)


def test_malicious_pickle_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for path, write in (
        (tmp_path / "evil.pth", lambda p: torch.save({"x": _Payload(marker)}, p)),
        (tmp_path / "evil.pkl", lambda p: p.write_bytes(pickle.dumps(_Payload(marker)))),
    ):
        write(path)
        with pytest.raises(CheckpointError, match="weights_only"):
            load_generator(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (bytes(range(256)) * 8, "not a PyTorch checkpoint or corrupt"),
        (b"hello, this is a text file\n", "not a PyTorch checkpoint or corrupt"),
        (b"", "is empty"),
    ],
)
def test_garbage_files_give_clear_errors(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as info:
        load_generator(path)
    assert "\n" not in str(info.value)


def test_truncated_checkpoints(tmp_path: Path) -> None:
    full = tmp_path / "full.pth"
    torch.save(_reference().state_dict(), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth"):
        load_generator(cut)
    st = save_generator(UNetGenerator(features=FEATURES), ModelSpec(features=FEATURES), tmp_path / "m.safetensors")
    st_cut = tmp_path / "cut.safetensors"
    st_cut.write_bytes(st.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=r"safetensors checkpoint .* corrupt or truncated"):
        load_generator(st_cut)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint file not found: .*nope\.pth"):
        load_generator(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not a file"):
        load_generator(tmp_path)


def test_non_state_dict_objects(tmp_path: Path) -> None:
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_generator(tmp_path / "list.pt")
    torch.save({"model": {"a": torch.zeros(1)}, "step": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no 'generator_state_dict'"):
        load_generator(tmp_path / "other.pt")


# --- devices -------------------------------------------------------------------------------------------


def test_unknown_device_is_a_device_error(tmp_path: Path) -> None:
    path = save_generator(UNetGenerator(features=FEATURES), ModelSpec(features=FEATURES), tmp_path / "m.safetensors")
    with pytest.raises(DeviceError, match="cannot move the generator to device 'gpu'") as info:
        load_generator(path, device="gpu")
    assert info.value.param == "device" and "--" not in str(info.value)
