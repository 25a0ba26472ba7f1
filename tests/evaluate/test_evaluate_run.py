"""Evaluation end to end: a tiny model on real patches, the typed result, the report, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from satgen_geo import evaluate as ev
from satgen_geo.errors import OutputError, SatgenError
from satgen_geo.model import ModelSpec, UNetGenerator, save_generator
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.train.datasets import Pair, PatchConfig, prepare_single_class, read_split, write_pair
from tests.conftest import SHARED, run_cli

INRIA = SHARED / "data" / "train" / "inria-austin"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    prepare_single_class(INRIA, root, "buildings", PatchConfig())
    train = read_split(root, "train")
    assert len(train) >= 3
    for pair in train[:3]:  # a manual held-out split
        write_pair(root, "val", Pair(f"val_{pair.name}", pair.mask, pair.image))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_generator(UNetGenerator(features=8), ModelSpec(features=8, name="t"), path)
    return path


def _metric_values(report: dict) -> dict:
    keep = ("metrics", "baselines", "per_image", "n_images", "mode", "seed")
    return {k: report[k] for k in keep}


def test_run_evaluation_end_to_end(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    model = load_model(checkpoint, "cpu")
    report = ev.run_evaluation(model, dataset, "val", out_dir=tmp_path / "a")
    written = json.loads((tmp_path / "a" / "report.json").read_text())
    assert "generated" not in report and "generated" not in written
    assert written["n_images"] == 3 and written["split"] == "val" and written["mode"] == "deterministic"
    for block in (written["metrics"], *written["baselines"].values()):
        for key in ("l1", "psnr", "ssim", ev.FEATURE_DISTANCE_KEY):
            assert isinstance(block[key], float) and math.isfinite(block[key]), (key, block)
    assert 0 < written["metrics"]["l1"] < 1 and -1 <= written["metrics"]["ssim"] <= 1
    assert ev.FEATURE_DISTANCE_NOTE in written["notes"][ev.FEATURE_DISTANCE_KEY]
    assert [m["name"] for m in written["per_image"]] == [p.name for p in read_split(dataset, "val")]
    colour = written["baselines"]["mean_colour"]
    assert "'train'" in colour["source"] and len(colour["rgb"]) == 3
    train_mean = np.mean([p.image.reshape(3, -1).mean(1) for p in read_split(dataset, "train")], axis=0)
    np.testing.assert_allclose(colour["rgb"], train_mean, atol=1e-3)  # equal-size patches: mean of means
    assert written["baselines"]["random_init_generator"]["features"] == 8

    with Image.open(tmp_path / "a" / "contact_sheet.png") as sheet:
        gap = ev.CONTACT_GAP_PX
        assert sheet.size == (3 * 256 + 2 * gap, 3 * 256 + 2 * gap)
        assert sheet.mode == "RGB"

    again = ev.run_evaluation(model, dataset, "val", out_dir=tmp_path / "b")
    assert _metric_values(again) == _metric_values(report)
    assert (tmp_path / "b" / "report.json").read_text().replace("/b/", "/a/") == (
        tmp_path / "a" / "report.json"
    ).read_text()


def _cheap_features(images) -> np.ndarray:
    """Stand-in extractor for tests that are not about features: per-channel mean and std."""
    return np.array([[*im.reshape(3, -1).mean(1), *im.reshape(3, -1).std(1)] for im in images], dtype=np.float64)


def test_stochastic_evaluation_is_seeded(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    model = load_model(checkpoint, "cpu")
    pairs = read_split(dataset, "val")
    runs = {
        name: ev.evaluate_model(model, pairs, deterministic=det, seed=seed, feature_extractor=_cheap_features)
        for name, det, seed in (("first", False, 3), ("second", False, 3), ("other", False, 4), ("plain", True, 3))
    }
    first, second = runs["first"].report, runs["second"].report
    assert first["mode"] == "stochastic" and first["feature_extractor"]["name"] == "function"
    assert _metric_values(first) == _metric_values(second)
    for a, b in zip(runs["first"].generated, runs["second"].generated, strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ("other", "plain"):
        pairs_of_images = zip(runs["first"].generated, runs[name].generated, strict=True)
        assert any(not np.array_equal(a, b) for a, b in pairs_of_images), name
    assert "evaluated real images" in first["baselines"]["mean_colour"]["source"]
    assert not model.generator.mc_dropout and not model.generator.training  # the model's mode is restored
    # The CLI entry point reproduces the same seeded draws (a third run).
    report = ev.run_evaluation(
        model, dataset, out_dir=tmp_path, deterministic=False, seed=3, feature_extractor=_cheap_features
    )
    assert report["per_image"] == first["per_image"] and report["metrics"] == first["metrics"]
    assert report["baselines"]["random_init_generator"] == first["baselines"]["random_init_generator"]


def test_channel_order_is_honoured(dataset: Path) -> None:
    torch.manual_seed(2)
    generator = UNetGenerator(features=8)
    pairs = read_split(dataset, "val")[:2]
    swapped = [Pair(p.name, p.mask[::-1].copy(), p.image) for p in pairs]
    ours = LoadedModel(generator, ModelSpec(features=8), torch.device("cpu"), "test", "0" * 64)
    theirs = LoadedModel(
        generator, ModelSpec(features=8, channel_order=("buildings", "roads")), torch.device("cpu"), "test", "0" * 64
    )
    a = ev.evaluate_model(ours, swapped, mean_colour=(100, 100, 100), feature_extractor=_cheap_features)
    b = ev.evaluate_model(theirs, pairs, mean_colour=(100, 100, 100), feature_extractor=_cheap_features)
    for x, y in zip(a.generated, b.generated, strict=True):
        np.testing.assert_array_equal(x, y)
    assert b.report["baselines"]["mean_colour"]["rgb"] == [100.0, 100.0, 100.0]
    assert b.report["baselines"]["mean_colour"]["source"] == "given by the caller"


def test_empty_split_is_a_clear_error(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    model = load_model(checkpoint, "cpu")
    with pytest.raises(SatgenError, match=r"no pairs in .*nosuch.*held-out region") as caught:
        ev.run_evaluation(model, dataset, "nosuch", out_dir=tmp_path)
    assert caught.value.param == "split" and "--" not in str(caught.value)


def test_evaluate_model_returns_the_report_and_the_images_apart(dataset: Path, checkpoint: Path) -> None:
    model = load_model(checkpoint, "cpu")
    pairs = read_split(dataset, "val")
    result = ev.evaluate_model(model, pairs, feature_extractor=_cheap_features)
    assert isinstance(result, ev.EvaluationResult) and "generated" not in result.report
    assert [g.shape for g in result.generated] == [p.image.shape for p in pairs]
    assert all(g.dtype == np.uint8 for g in result.generated)
    assert result.report["metrics"]["l1"] == ev.mean_l1(result.generated, [p.image for p in pairs])
    per_image = [ev.l1(g, p.image) for g, p in zip(result.generated, pairs, strict=True)]
    assert [m["l1"] for m in result.report["per_image"]] == per_image


def test_evaluation_leaves_the_global_rng_alone(dataset: Path, checkpoint: Path) -> None:
    model = load_model(checkpoint, "cpu")
    before = torch.get_rng_state()
    ev.evaluate_model(model, read_split(dataset, "val"), deterministic=False, feature_extractor=_cheap_features)
    assert torch.equal(torch.get_rng_state(), before)


def test_unwritable_output_folder_is_an_output_error(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot create the folder") as caught:
        ev.run_evaluation(load_model(checkpoint, "cpu"), dataset, out_dir=blocker / "out", feature_extractor=_cheap_features)
    assert caught.value.param == "output"


def test_cli_evaluate_unwritable_output_is_one_error_line(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("evaluate", "--data", dataset, "--checkpoint", checkpoint, "--device", "cpu", "-o", blocker / "out")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: cannot create the folder"), result.stderr
    assert lines[0].endswith("(--output)")  # the CLI names its own option for the concept


@pytest.mark.parametrize(("kwargs", "param"), [({"batch_size": 0}, "batch_size"), ({"max_sheet_rows": 0}, "sheet_rows")])
def test_run_evaluation_rejects_bad_counts(dataset: Path, checkpoint: Path, tmp_path: Path, kwargs, param) -> None:
    with pytest.raises(SatgenError, match="must be a whole number of at least 1") as caught:
        ev.run_evaluation(load_model(checkpoint, "cpu"), dataset, out_dir=tmp_path / "out", **kwargs)
    assert caught.value.param == param and not (tmp_path / "out" / "report.json").exists()
