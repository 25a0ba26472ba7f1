"""Training on real patches from ../shared: datasets, 2 steps, resume, perceptual loss, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from satgen_geo.errors import CheckpointError, InputFileError
from satgen_geo.model import load_generator
from satgen_geo.model.discriminator import PatchDiscriminator
from satgen_geo.train.augment import PairDataset
from satgen_geo.train.datasets import PatchConfig, iter_patches, prepare_satgen_cv, prepare_single_class, read_split
from satgen_geo.train.trainer import TrainConfig, train
from satgen_geo.train.vgg import PerceptualLoss, load_vgg_weights, perceptual_loss, vgg19_features
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def dataset(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    prepare_satgen_cv(shared / "data/train/seed-pairs", out)
    prepare_single_class(shared / "data/train/inria-austin", out, "buildings", PatchConfig())
    prepare_single_class(shared / "data/train/massachusetts", out, "roads", PatchConfig(stride_px=512, holdout_right=0.3))
    return out


def test_prepared_dataset_channels_and_holdout(dataset: Path, shared: Path) -> None:
    import tifffile

    train_pairs, val_pairs = read_split(dataset, "train"), read_split(dataset, "val")
    assert len(val_pairs) >= 4 and len(train_pairs) >= 10
    seed = next(p for p in train_pairs if p.name.startswith("10078660_15_patch_001_x256_y0"))
    raw = tifffile.imread(shared / "data/train/seed-pairs/masks/10078660_15_patch_001_x256_y0_processed.tiff")
    np.testing.assert_array_equal(seed.mask[0] > 0, raw[..., 1] > 127)  # roads came from source channel 1
    np.testing.assert_array_equal(seed.mask[1] > 0, raw[..., 0] > 127)
    inria = next(p for p in train_pairs if p.name.startswith("austin1"))
    assert inria.mask[1].any() and not inria.mask[0].any()
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert any("converted channel order" in note for part in manifest["parts"] for note in part["notes"])
    # held out: every val patch lies right of every training patch of the same tile, with a gap
    for tile in ("10078660_15", "10078675_15"):
        train_x = [int(p.name.split("_x")[1].split("_")[0]) for p in train_pairs if p.name.startswith(tile + "_x")]
        val_x = [int(p.name.split("_x")[1].split("_")[0]) for p in val_pairs if p.name.startswith(tile)]
        assert val_x and min(val_x) >= max(train_x) + 2 * 256


def test_iter_patches_never_overlaps_holdout() -> None:
    config = PatchConfig(stride_px=64, holdout_right=0.3)
    patches = list(iter_patches(1500, 1500, config))
    right_of_train = max(c + 256 for s, _, c in patches if s == "train")
    assert min(c for s, _, c in patches if s == "val") >= right_of_train


def test_augmentation_keeps_pairs_aligned(dataset: Path) -> None:
    pairs = read_split(dataset, "train")[:3]
    torch.manual_seed(1)
    data = PairDataset(pairs, jitter=0.0)
    for index, pair in enumerate(pairs):
        mask, image = data[index]
        # a dihedral transform moves mask and image the same way: find it from the mask alone
        base_mask = torch.from_numpy(pair.mask).float() / 127.5 - 1
        base_image = torch.from_numpy(pair.image).float() / 127.5 - 1
        matches = [
            (k, f) for k in range(4) for f in (False, True)
            if torch.equal(_dihedral(base_mask, k, f), mask) and torch.equal(_dihedral(base_image, k, f), image)
        ]
        assert matches


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(1, 2))
    return torch.flip(x, dims=(2,)) if flip else x


def test_two_steps_then_resume(dataset: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=(str(dataset),), out_dir=str(tmp_path), features=8, disc_features=8,
                         epochs=4, batch_size=2, lambda_perc=0, max_steps=2)
    first = train(config)
    assert first.steps_done == 2 and first.val_l1 is not None and 0 < first.val_l1 < 1
    saved = torch.load(first.checkpoint, weights_only=True)
    assert saved["global_step"] == 2 and "optimizer_G_state_dict" in saved
    lr_after_2 = saved["optimizer_G_state_dict"]["param_groups"][0]["lr"]
    second = train(TrainConfig(**{**config.__dict__, "max_steps": 4}), resume=first.checkpoint)
    assert second.steps_done == 4
    resumed = torch.load(second.checkpoint, weights_only=True)
    assert resumed["optimizer_G_state_dict"]["param_groups"][0]["lr"] < lr_after_2  # schedule continued
    changed = [k for k, v in resumed["generator_state_dict"].items() if not torch.equal(v, saved["generator_state_dict"][k])]
    assert changed
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert rows and {"loss_d", "loss_g_l1", "val_l1"} <= set(rows[0])
    model, spec = load_generator(second.exported)
    assert spec.features == 8 and spec.provenance["steps"] == 4
    assert load_generator(second.checkpoint)[1].features == 8  # the training checkpoint loads too


def test_resume_with_other_width_is_refused(dataset: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=(str(dataset),), out_dir=str(tmp_path), features=8, disc_features=8, batch_size=2, lambda_perc=0, max_steps=1)
    result = train(config)
    with pytest.raises(CheckpointError, match="generator features"):
        train(TrainConfig(**{**config.__dict__, "features": 16}), resume=result.checkpoint)


def test_perceptual_loss_path_with_random_vgg_weights(dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in vgg19_features().state_dict().items()}, weights)
    loss = perceptual_loss(weights)
    a, b = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(loss(a, a)) == 0.0 and float(loss(a, b)) > 0
    config = TrainConfig(data=(str(dataset),), out_dir=str(tmp_path / "run"), features=8, disc_features=8,
                         batch_size=2, lambda_perc=50, vgg_weights=str(weights), max_steps=1)
    rows = train(config) and list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert float(rows[-1]["loss_g_perc"]) > 0


def test_vgg_weight_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="--lambda-perc 0"):
        perceptual_loss(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not a VGG-19"):
        load_vgg_weights(vgg19_features(), bad)
    assert isinstance(PerceptualLoss(vgg19_features()).features, torch.nn.Sequential)


def test_discriminator_patch_output() -> None:
    d = PatchDiscriminator(features=8)
    logits = d(torch.zeros(2, 2, 256, 256), torch.zeros(2, 3, 256, 256))
    assert logits.shape == (2, 1, 30, 30)
    assert any("parametrizations" in name for name, _ in d.named_modules())  # spectral norm


def test_cli_train_without_vgg_weights_fails_clearly(dataset: Path, tmp_path: Path) -> None:
    result = run_cli("train", "--data", dataset, "-o", tmp_path / "run", "--features", "8", "--max-steps", "1")
    assert result.returncode == 1 and "--lambda-perc 0" in result.stderr and "Traceback" not in result.stderr


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="satgen dataset prepare"):
        read_split(tmp_path)
