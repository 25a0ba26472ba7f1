"""Training on real patches: 2 steps, resume, perceptual loss, export, checked settings, own RNG streams."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from satgen_geo.errors import PARAMS, CheckpointError, ConfigError, OutputError
from satgen_geo.evaluate import evaluate_model
from satgen_geo.model import load_generator
from satgen_geo.model.discriminator import PatchDiscriminator
from satgen_geo.model.loaded import load_model
from satgen_geo.train.datasets import read_split
from satgen_geo.train.trainer import TrainConfig, train
from satgen_geo.train.vgg import perceptual_loss, vgg19_features
from tests.conftest import run_cli


def _tiny(dataset: Path, out: Path, **kw: object) -> TrainConfig:
    settings = {"features": 8, "disc_features": 8, "batch_size": 2, "lambda_perc": 0, "max_steps": 2, **kw}
    return TrainConfig(data=(str(dataset),), out_dir=str(out), **settings)  # type: ignore[arg-type]


def _log_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


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
    rows = _log_rows(tmp_path / "log.csv")
    assert rows and {"loss_d", "loss_g_l1", "val_l1"} <= set(rows[0])
    _, spec = load_generator(second.exported)
    assert spec.features == 8 and spec.provenance["steps"] == 4
    assert load_generator(second.checkpoint)[1].features == 8  # the training checkpoint loads too


def test_resumed_at_an_epoch_boundary_equals_one_run(small_dataset: Path, tmp_path: Path) -> None:
    """Two epochs in one go = one epoch, then one more resumed: each epoch's draws come from (seed, epoch)."""
    whole = train(_tiny(small_dataset, tmp_path / "whole", epochs=2, max_steps=None))
    half = train(_tiny(small_dataset, tmp_path / "half", epochs=2, max_steps=2))
    assert half.epochs_done == 1 and whole.epochs_done == 2
    rest = train(_tiny(small_dataset, tmp_path / "half", epochs=2, max_steps=None), resume=half.checkpoint)
    assert rest.steps_done == whole.steps_done == 4
    a = torch.load(whole.checkpoint, weights_only=True)["generator_state_dict"]
    b = torch.load(rest.checkpoint, weights_only=True)["generator_state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_other_width_is_refused(dataset: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=(str(dataset),), out_dir=str(tmp_path), features=8, disc_features=8, batch_size=2,
                         lambda_perc=0, max_steps=1)
    result = train(config)
    with pytest.raises(CheckpointError, match="generator features"):
        train(TrainConfig(**{**config.__dict__, "features": 16}), resume=result.checkpoint)


def test_same_seed_same_weights_and_the_global_rng_is_left_alone(small_dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = train(_tiny(small_dataset, tmp_path / "a"))
    assert torch.equal(torch.get_rng_state(), before)  # nothing drew from (or seeded) the global RNG
    torch.manual_seed(999)  # and the global RNG does not steer a run either
    second = train(_tiny(small_dataset, tmp_path / "b"))
    other = train(_tiny(small_dataset, tmp_path / "c", seed=1))
    a, b, c = (torch.load(r.checkpoint, weights_only=True)["generator_state_dict"] for r in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _cheap_features(images) -> np.ndarray:
    """Stand-in extractor (this test is about L1): per-channel mean and std."""
    return np.array([[*im.reshape(3, -1).mean(1), *im.reshape(3, -1).std(1)] for im in images], dtype=np.float64)


def test_validation_l1_is_the_evaluation_l1(dataset: Path, tmp_path: Path) -> None:
    result = train(_tiny(dataset, tmp_path))
    model = load_model(result.exported, "cpu")
    report = evaluate_model(model, read_split(dataset, "val"), feature_extractor=_cheap_features).report
    assert result.val_l1 == report["metrics"]["l1"]
    logged = _log_rows(tmp_path / "log.csv")[-1]["val_l1"]
    assert logged == f"{report['metrics']['l1']:.5f}"


def test_perceptual_loss_path_with_random_vgg_weights(dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in vgg19_features().state_dict().items()}, weights)
    loss = perceptual_loss(weights)
    a, b = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(loss(a, a)) == 0.0 and float(loss(a, b)) > 0
    config = TrainConfig(data=(str(dataset),), out_dir=str(tmp_path / "run"), features=8, disc_features=8,
                         batch_size=2, lambda_perc=50, vgg_weights=str(weights), max_steps=1)
    rows = train(config) and _log_rows(tmp_path / "run" / "log.csv")
    assert float(rows[-1]["loss_g_perc"]) > 0


def test_discriminator_patch_output() -> None:
    d = PatchDiscriminator(features=8)
    logits = d(torch.zeros(2, 2, 256, 256), torch.zeros(2, 3, 256, 256))
    assert logits.shape == (2, 1, 30, 30)
    assert any("parametrizations" in name for name, _ in d.named_modules())  # spectral norm


BAD_SETTINGS = [
    ("checkpoint_every", 0), ("epochs", 0), ("epochs", 100_001), ("epochs", 1.5), ("epochs", True),
    ("batch_size", 0), ("batch_size", 257), ("features", 0), ("features", 513), ("disc_features", 0),
    ("max_steps", 0), ("seed", -(2**63) - 1), ("seed", 2**64), ("lr", 0.0), ("lr", -1e-4), ("lr", 2.0),
    ("lr_min", 1e-3),
    ("lambda_gan", -1.0), ("lambda_l1", float("nan")), ("lambda_perc", -0.5), ("input_noise_std", -0.1),
    ("jitter", 2.0), ("betas", (0.5, 1.0)), ("betas", (0.5,)), ("data", ()), ("name", ""), ("out_dir", ""),
]


@pytest.mark.parametrize(("field", "value"), BAD_SETTINGS)
def test_train_config_checks_every_setting(field: str, value: object, tmp_path: Path) -> None:
    good = {"data": ("somewhere",), "out_dir": str(tmp_path)}
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**{**good, field: value})  # type: ignore[arg-type]
    expected = {"name": "model_name", "out_dir": "output"}.get(field, field)
    assert caught.value.param == expected and expected in PARAMS
    assert "--" not in str(caught.value) and repr(value) in str(caught.value)


def test_train_config_accepts_the_recipe_and_edges(tmp_path: Path) -> None:
    config = TrainConfig(data=["a", Path("b")], out_dir=str(tmp_path), lambda_perc=0, lr=1.0, lr_min=1.0, jitter=0)
    assert config.data == ("a", "b") and replace(config, max_steps=None).max_steps is None


def test_unwritable_run_folder_is_an_output_error(small_dataset: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot create the folder") as caught:
        train(_tiny(small_dataset, blocker / "run"))
    assert caught.value.param == "output"


def test_cli_train_without_vgg_weights_fails_clearly(dataset: Path, tmp_path: Path) -> None:
    result = run_cli("train", "--data", dataset, "-o", tmp_path / "run", "--features", "8", "--max-steps", "1")
    assert result.returncode == 1 and "perceptual loss weight to 0" in result.stderr and "Traceback" not in result.stderr
    assert "(--vgg-weights)" in result.stderr  # the CLI names its own option for the concept


def test_cli_checkpoint_every_zero_is_refused_before_training(dataset: Path, tmp_path: Path) -> None:
    result = run_cli("train", "--data", dataset, "-o", tmp_path / "run", "--features", "8", "--lambda-perc", "0",
                     "--max-steps", "1", "--checkpoint-every", "0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--checkpoint-every" in result.stderr and not (tmp_path / "run").exists()
