"""Fréchet distance: properties, both computation routes against the closed form, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from satgen_geo import evaluate as ev


def test_frechet_distance_properties() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(12, 1280))
    b = rng.normal(size=(9, 1280)) * 1.3
    assert ev.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8 * np.trace(np.cov(a, rowvar=False)))
    ab, ba = ev.frechet_distance(a, b), ev.frechet_distance(b, a)
    assert math.isfinite(ab) and ab > 0
    assert ab == pytest.approx(ba, rel=1e-10)
    shifts = [ev.frechet_distance(a, a + s) for s in (0.1, 0.5, 1.0)]
    assert shifts == pytest.approx([1280 * s**2 for s in (0.1, 0.5, 1.0)], rel=1e-9)  # same covariance
    assert shifts[0] < shifts[1] < shifts[2]


def test_frechet_distance_branches_agree_and_match_closed_form() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(30, 6)), rng.normal(size=(40, 6)) * 2 + 1  # n > d: eigen route
    a_cov, b_cov = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(a_cov)
    root = (v * np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root @ b_cov @ root)
    reference = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(a_cov + b_cov) - 2 * np.sqrt(inner).sum()
    assert ev.frechet_distance(a, b) == pytest.approx(reference, rel=1e-9)
    small_a, small_b = a[:5], b[:4]  # n <= d: SVD route, singular covariances
    a_cov, b_cov = np.cov(small_a, rowvar=False), np.cov(small_b, rowvar=False)
    w, v = np.linalg.eigh(a_cov)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.clip(np.linalg.eigvalsh(root @ b_cov @ root), 0, None)
    reference = ((small_a.mean(0) - small_b.mean(0)) ** 2).sum() + np.trace(a_cov + b_cov) - 2 * np.sqrt(inner).sum()
    assert ev.frechet_distance(small_a, small_b) == pytest.approx(reference, rel=1e-6)


def test_frechet_distance_rejects_bad_input() -> None:
    with pytest.raises(ev.EvaluationError, match="at least 2 samples"):
        ev.frechet_distance(np.zeros((1, 4)), np.zeros((3, 4)))
    with pytest.raises(ev.EvaluationError, match="same d"):
        ev.frechet_distance(np.zeros((3, 4)), np.zeros((3, 5)))


