"""The shipped default model: it loads offline, and `satgen evaluate` reproduces its model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from satgen_geo.evaluate import run_evaluation
from satgen_geo.model.loaded import DEFAULT_CHECKPOINT, load_model
from satgen_geo.train.datasets import PatchConfig, prepare_satgen_cv, prepare_single_class

CARD_REPORT = DEFAULT_CHECKPOINT.with_name("heldout_report.json")


def test_default_model_is_small_and_loads() -> None:
    model = load_model(None, "cpu")
    assert model.spec.name == "satgen-default-f16" and model.source == "default"
    assert DEFAULT_CHECKPOINT.stat().st_size <= 30 * 1024 * 1024


@pytest.fixture(scope="module")
def heldout_data(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data set of scripts/train_default_model.sh, rebuilt from ../shared."""
    out = tmp_path_factory.mktemp("default-data")
    train = shared / "data/train"
    prepare_satgen_cv(train / "seed-pairs", out)
    prepare_single_class(train / "massachusetts", out, "roads", PatchConfig(stride_px=64, holdout_right=0.3))
    prepare_single_class(train / "inria-austin", out, "buildings", PatchConfig())
    return out


def test_evaluate_reproduces_the_model_card(heldout_data: Path, tmp_path: Path) -> None:
    card = json.loads(CARD_REPORT.read_text())
    report = run_evaluation(load_model(None, "cpu"), heldout_data, "val", out_dir=tmp_path)
    assert report["n_images"] == card["n_images"] == 9
    for key in ("l1", "psnr", "ssim", "feature_distance_effnet_lite0"):
        assert report["metrics"][key] == pytest.approx(card["metrics"][key], rel=0.02), key
        for name in ("mean_colour", "random_init_generator"):
            assert report["baselines"][name][key] == pytest.approx(card["baselines"][name][key], rel=0.02), (name, key)
    assert (tmp_path / "contact_sheet.png").is_file()
