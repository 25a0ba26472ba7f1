"""A prepared dataset from the real patches in ../shared, shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from satgen_geo.train.datasets import (
    PatchConfig,
    Summary,
    prepare_satgen_cv,
    prepare_single_class,
    read_split,
    write_manifest,
    write_pair,
)


@pytest.fixture(scope="session")
def dataset(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SatGen-CV seed pairs, Inria buildings and Massachusetts roads with a held-out right strip."""
    out = tmp_path_factory.mktemp("data")
    prepare_satgen_cv(shared / "data/train/seed-pairs", out)
    prepare_single_class(shared / "data/train/inria-austin", out, "buildings", PatchConfig())
    prepare_single_class(shared / "data/train/massachusetts", out, "roads", PatchConfig(stride_px=512, holdout_right=0.3))
    return out


@pytest.fixture(scope="session")
def small_dataset(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training and 2 held-out pairs of :func:`dataset`: an epoch is 2 steps at batch size 2."""
    out = tmp_path_factory.mktemp("small")
    for split, count in (("train", 4), ("val", 2)):
        for pair in read_split(dataset, split)[:count]:
            write_pair(out, split, pair)
    write_manifest(out, Summary(), [str(dataset)], PatchConfig(), "subset")
    return out
