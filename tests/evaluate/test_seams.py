"""Seam score: about 1 without seams, above 1 with steps on the window lattice, streamed = in memory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from satgen_geo import evaluate as ev
from satgen_geo.errors import ConfigError
from satgen_geo.tiling import plan_windows


def _random_image(shape=(3, 64, 64), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _smooth_textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([60 + 0.1 * xx + 0.05 * yy, 90 + 0.08 * yy, 120 - 0.05 * xx]).astype(float)
    return base + rng.normal(0, 6, (3, height, width))


def test_seam_score_is_about_one_without_seams() -> None:
    image = np.clip(_smooth_textured(640, 768), 0, 255).astype(np.uint8)
    assert ev.seam_score(image, 256, 128) == pytest.approx(1.0, abs=0.03)


def test_seam_score_detects_steps_on_window_boundaries() -> None:
    height, width = 640, 768
    image = _smooth_textured(height, width)
    plan = plan_windows(height, width, 256, 128)
    for k, offset in enumerate(plan.col_offsets):  # a step at every window start (= previous window end)
        image[:, :, offset:] += 10 * (-1) ** k
    for k, offset in enumerate(plan.row_offsets):
        image[:, offset:, :] += 10 * (-1) ** k
    seamy = np.clip(image, 0, 255).astype(np.uint8)
    assert ev.seam_score(seamy, 256, 128) > 1.3
    # The same steps are not on the boundaries of another lattice: no seams there.
    assert ev.seam_score(seamy, 256, 100) < 1.1


def test_seam_score_geotiff_equals_in_memory(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    height, width = 600, 700
    image = _smooth_textured(height, width, seed=5)
    image[:, :, 256:] += 12
    image[:, 384:, :] -= 9
    image = np.clip(image, 0, 255).astype(np.uint8)
    path = tmp_path / "rgb.tif"
    profile = {
        "driver": "GTiff", "height": height, "width": width, "count": 3, "dtype": "uint8", "crs": "EPSG:3857",
        "transform": rasterio.transform.from_origin(0, height, 1, 1),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
    expected = ev.seam_score(image, 256, 128)
    assert expected > 1.05
    for strip_rows in (None, 1, 97, 128, 1000):
        assert ev.seam_score_geotiff(path, 256, 128, strip_rows=strip_rows) == expected


def test_seam_score_without_interior_boundaries_is_nan() -> None:
    assert math.isnan(ev.seam_score(_random_image((3, 200, 256)), 256, 128))




@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"overlap_px": 225}, "overlap_px"), ({"overlap_px": -1}, "overlap_px"), ({"tile_px": 0}, "tile_px")],
)
def test_seam_score_rejects_a_lattice_no_render_uses(kwargs: dict, param: str) -> None:
    with pytest.raises(ConfigError, match="window") as caught:
        ev.seam_score(_random_image((3, 512, 512)), **kwargs)
    assert caught.value.param == param


def test_seam_score_geotiff_rejects_bad_strip_rows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rows read at a time must be a whole number of at least 1") as caught:
        ev.seam_score_geotiff(tmp_path / "not-read.tif", strip_rows=0)
    assert caught.value.param == "strip_rows"
