"""Prepared datasets: channel order, the held-out split, the one lister of pair files, PatchConfig."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from satgen_geo.errors import PARAMS, ConfigError, InputFileError
from satgen_geo.train.datasets import PatchConfig, iter_patches, read_split, split_images


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


def test_split_images_lists_what_read_split_reads(dataset: Path) -> None:
    for split in ("train", "val"):
        assert [p.stem for p in split_images(dataset, split)] == [p.name for p in read_split(dataset, split)]
    assert split_images(dataset, "nosuch") == []


def test_iter_patches_never_overlaps_holdout() -> None:
    config = PatchConfig(stride_px=64, holdout_right=0.3)
    patches = list(iter_patches(1500, 1500, config))
    right_of_train = max(c + 256 for s, _, c in patches if s == "train")
    assert min(c for s, _, c in patches if s == "val") >= right_of_train


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="satgen dataset prepare"):
        read_split(tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("patch_px", 300, "patch_px"), ("patch_px", 128, "patch_px"), ("patch_px", 8192, "patch_px"),
        ("stride_px", 0, "stride_px"), ("stride_px", 31, "stride_px"), ("holdout_right", 0.95, "holdout_right"),
        ("holdout_right", -0.1, "holdout_right"), ("holdout_right", float("nan"), "holdout_right"),
    ],
)
def test_patch_config_is_checked(field: str, value: object, param: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PatchConfig(**{field: value})
    assert caught.value.param == param and param in PARAMS and "--" not in str(caught.value)
