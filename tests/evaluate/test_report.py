"""The evaluation's outputs: the contact sheet and the strict JSON report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from satgen_geo import evaluate as ev
from satgen_geo.errors import ConfigError
from satgen_geo.train.datasets import Pair


def test_contact_sheet_rows_and_colours(tmp_path: Path) -> None:
    mask = np.zeros((2, 256, 256), np.uint8)
    mask[0, :10] = 255  # roads: red
    mask[1, -10:] = 255  # buildings: green
    pairs = [Pair(f"p{i}", mask, np.full((3, 256, 256), 50 * i, np.uint8)) for i in range(3)]
    generated = [np.full((3, 256, 256), 7, np.uint8)] * 3
    path = ev.contact_sheet(pairs, generated, tmp_path / "sheet.png", max_rows=2)
    with Image.open(path) as sheet:
        gap = ev.CONTACT_GAP_PX
        assert sheet.size == (3 * 256 + 2 * gap, 2 * 256 + gap)
        pixels = np.asarray(sheet)
    assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[255, 0]) == (0, 255, 0)
    assert tuple(pixels[0, 256 + gap]) == (7, 7, 7)
    assert tuple(pixels[256 + gap, 2 * (256 + gap)]) == (50, 50, 50)
    assert not list(tmp_path.glob(".*partial"))


def test_write_report_handles_inf_and_nan(tmp_path: Path) -> None:
    path = ev.write_report(
        {"a": math.inf, "b": np.float32(0.123456789), "c": math.nan, "d": [np.int64(3)]},
        tmp_path / "r.json",
    )
    assert json.loads(path.read_text()) == {"a": "inf", "b": 0.123457, "c": None, "d": [3]}


def test_write_report_writes_every_key(tmp_path: Path) -> None:
    """No key is dropped in silence: the generated images travel apart, in EvaluationResult."""
    report = {"generated": [1, 2], "per_image": [{"name": "p", "l1": np.float64(0.5)}]}
    assert json.loads(ev.write_report(report, tmp_path / "r.json").read_text()) == {
        "generated": [1, 2], "per_image": [{"name": "p", "l1": 0.5}]
    }


def test_contact_sheet_rejects_zero_rows(tmp_path: Path) -> None:
    pair = Pair("p", np.zeros((2, 256, 256), np.uint8), np.zeros((3, 256, 256), np.uint8))
    with pytest.raises(ConfigError, match="contact sheet rows") as caught:
        ev.contact_sheet([pair], [pair.image], tmp_path / "sheet.png", max_rows=0)
    assert caught.value.param == "sheet_rows" and not (tmp_path / "sheet.png").exists()
