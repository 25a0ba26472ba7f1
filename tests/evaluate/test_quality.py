"""Checkerboard score and roof colour on synthetic images whose answer is known, and on a real photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from satgen_geo.errors import EvaluationError
from satgen_geo.evaluate.quality import checkerboard_score, greenness, house_grid_mask, roof_colour


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(grey, 0, 255)[None], 3, axis=0).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, side: int = 256) -> np.ndarray:
    return 128 + 40 * ndimage.gaussian_filter(rng.normal(size=(side, side)), 3) / 0.1


def test_white_and_smooth_noise_score_about_one() -> None:
    rng = np.random.default_rng(0)
    white = checkerboard_score(_rgb(128 + 30 * rng.normal(size=(256, 256))))
    assert 0.8 < white.x < 1.25 and 0.8 < white.y < 1.25
    smooth = checkerboard_score(_rgb(_smooth_noise(rng)))  # its finest detail is uint8 rounding: white
    assert 0.7 < smooth.x < 1.3 and 0.7 < smooth.y < 1.3


def test_checkerboard_scores_high_and_along_the_right_axis() -> None:
    rng = np.random.default_rng(1)
    base = _smooth_noise(rng)
    yy, xx = np.mgrid[:256, :256]
    checker = checkerboard_score(_rgb(base + 6 * (-1.0) ** (yy + xx)))
    assert checker.x > 30 and checker.y > 30
    columns = checkerboard_score(_rgb(base + 6 * (-1.0) ** xx))  # alternating columns: a peak along x only
    assert columns.x > 30 and columns.y < 1.5
    # a weaker pattern scores lower: the score grows with the artefact's amplitude
    weak = checkerboard_score(_rgb(base + 1 * (-1.0) ** (yy + xx)))
    assert 1.5 < weak.worst < checker.worst


def test_real_photo_has_no_checkerboard(shared: Path) -> None:
    path = sorted((shared / "data/train/seed-pairs/images").glob("*.png"))[0]
    image = np.moveaxis(np.asarray(Image.open(path).convert("RGB")), -1, 0)
    assert checkerboard_score(image).worst < 3


def test_checkerboard_score_rejects_bad_shapes() -> None:
    with pytest.raises(EvaluationError):
        checkerboard_score(np.zeros((256, 256), dtype=np.uint8))
    with pytest.raises(EvaluationError):
        checkerboard_score(np.zeros((3, 16, 16), dtype=np.uint8))


def test_roof_colour_inside_ring_and_contrast() -> None:
    image = np.zeros((3, 64, 64), dtype=np.uint8)
    image[:] = np.array([60, 120, 50], dtype=np.uint8)[:, None, None]  # green ground
    buildings = np.zeros((64, 64), dtype=bool)
    buildings[20:40, 20:40] = True
    image[:, buildings] = np.array([[180], [170], [160]], dtype=np.uint8)  # grey roof
    stats = roof_colour(image, buildings)
    assert stats is not None and stats.n_pixels == 400
    assert stats.mean_rgb == pytest.approx((180, 170, 160))
    assert stats.ring_rgb == pytest.approx((60, 120, 50))
    assert stats.mean_greenness == pytest.approx(0.0)
    assert np.all(stats.greenness == 0.0)
    assert stats.contrast == pytest.approx(np.linalg.norm([120, 50, 110]))
    assert stats.luma_contrast == pytest.approx(0.299 * 120 + 0.587 * 50 + 0.114 * 110)
    # a green roof on green ground: high greenness, no contrast
    image[:, buildings] = np.array([[60], [120], [50]], dtype=np.uint8)
    green = roof_colour(image, buildings)
    assert green is not None and green.mean_greenness == pytest.approx(65.0) and green.contrast == pytest.approx(0.0)
    np.testing.assert_allclose(greenness(image)[buildings], 65.0)


def test_roof_colour_needs_buildings_and_matching_shapes() -> None:
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    assert roof_colour(image, np.zeros((32, 32), dtype=bool)) is None
    assert roof_colour(image, np.ones((32, 32), dtype=bool)) is None  # no ground around them
    with pytest.raises(EvaluationError):
        roof_colour(image, np.zeros((16, 16), dtype=bool))


def test_house_grid_has_separate_houses_beside_streets() -> None:
    mask = house_grid_mask()
    roads, houses = mask[0] > 0, mask[1] > 0
    assert mask.shape == (2, 512, 512) and mask.dtype == np.uint8 and not (roads & houses).any()
    labels, count = ndimage.label(houses)
    sizes = ndimage.sum(houses, labels, range(1, count + 1))
    assert count == 168 and np.sum(sizes == 120) == 160  # 12 x 10 px houses; 8 cut by the right edge
    stats = roof_colour(np.repeat(mask[1:2], 3, axis=0), houses)  # every house is bordered by ground
    assert stats is not None and stats.mean_rgb == (255.0, 255.0, 255.0) and stats.ring_rgb == (0.0, 0.0, 0.0)
