"""Pixel metrics: L1, PSNR and SSIM against hand values and an independent reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from satgen_geo import evaluate as ev
from satgen_geo.errors import SatgenError


def _random_image(shape=(3, 64, 64), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --------------------------------------------------------------------------- pixel metrics


def test_identical_images() -> None:
    a = _random_image()
    assert ev.l1(a, a) == 0.0
    assert ev.psnr(a, a) == math.inf
    assert ev.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_constant_offset_l1_and_psnr() -> None:
    a = np.random.default_rng(1).integers(0, 246, (3, 32, 40), dtype=np.uint8)
    b = a + np.uint8(10)
    assert ev.l1(a, b) == pytest.approx(10 / 255)
    assert ev.psnr(a, b) == pytest.approx(20 * math.log10(255 / 10))
    assert ev.l1(a, b) == ev.l1(b, a) and ev.psnr(a, b) == ev.psnr(b, a)


def test_ssim_of_constant_images_matches_hand_value() -> None:
    # Flat images: zero variances, so SSIM is the luminance term alone.
    a = np.full((3, 32, 32), 100, np.uint8)
    b = np.full((3, 32, 32), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)  # 0.99547...
    assert ev.ssim(a, b) == pytest.approx(expected, rel=1e-12)


def test_ssim_matches_direct_window_sums() -> None:
    """Independent reference: weighted statistics of every 11x11 window, computed directly."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (3, 16, 19), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(3):
        for i in range(16 - 10):
            for j in range(19 - 10):
                p = a[ch, i : i + 11, j : j + 11].astype(float)
                q = b[ch, i : i + 11, j : j + 11].astype(float)
                mp, mq = (w * p).sum(), (w * q).sum()
                vp, vq = (w * (p - mp) ** 2).sum(), (w * (q - mq) ** 2).sum()
                cov = (w * (p - mp) * (q - mq)).sum()
                values.append((2 * mp * mq + c1) * (2 * cov + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
    assert ev.ssim(a, b) == pytest.approx(np.mean(values), rel=1e-10)


def test_ssim_symmetric_and_decreasing_with_noise() -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64]
    a = np.clip(np.stack([80 + xx, 60 + yy, 120 + 0 * xx]) + rng.normal(0, 8, (3, 64, 64)), 0, 255).astype(np.uint8)
    noise = rng.normal(0, 1, a.shape)
    scores = [ev.ssim(a, np.clip(a + s * noise, 0, 255).astype(np.uint8)) for s in (0, 2, 5, 10, 20, 40, 80)]
    assert scores[0] == pytest.approx(1.0)
    assert all(later < earlier for earlier, later in zip(scores, scores[1:], strict=False))
    b = np.clip(a + 20 * noise, 0, 255).astype(np.uint8)
    assert ev.ssim(a, b) == pytest.approx(ev.ssim(b, a), rel=1e-12)


def test_metrics_reject_bad_shapes() -> None:
    with pytest.raises(ev.EvaluationError, match="same shape"):
        ev.l1(_random_image((3, 8, 8)), _random_image((3, 8, 9)))
    with pytest.raises(SatgenError, match="at least 11x11"):
        ev.ssim(_random_image((3, 8, 8)), _random_image((3, 8, 8)))




def test_mean_l1_weighs_images_equally() -> None:
    a, b = np.zeros((3, 16, 16), np.uint8), np.zeros((3, 32, 32), np.uint8)
    real = [a + np.uint8(51), b]  # L1 0.2 and 0.0: the mean is 0.1 whatever the image sizes
    assert ev.mean_l1([a, b], real) == pytest.approx(0.1)
    assert ev.mean_l1([a, b], real) == ev.l1(a, real[0]) / 2
    with pytest.raises(ev.EvaluationError, match="same non-zero number"):
        ev.mean_l1([a], real)
