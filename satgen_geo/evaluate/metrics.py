"""Pixel metrics of one image against another: L1, PSNR and SSIM on uint8 RGB ``(3, H, W)``.

* ``l1``: mean absolute error in ``[0, 1]`` units (``|a - b| / 255``);
* ``psnr``: peak signal-to-noise ratio in dB with data range 255 (``inf`` for identical images);
* ``ssim``: structural similarity (Wang et al. 2004): 11×11 Gaussian window, σ = 1.5,
  K1 = 0.01, K2 = 0.03, L = 255, computed over the "valid" windows of each channel and
  averaged over channels.

:func:`mean_l1` is the one held-out L1 of the project: the evaluation report's ``l1`` and
the trainer's validation ``val_l1`` are both this number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from satgen_geo.errors import EvaluationError

__all__ = ["DATA_RANGE", "image_metrics", "l1", "mean_l1", "psnr", "ssim"]

#: Value range of the uint8 images the metrics compare.
DATA_RANGE = 255.0
# SSIM constants (Wang et al. 2004).
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def _as_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 3 or a.shape != b.shape:
        raise EvaluationError(f"images must both be (C, H, W) of the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise EvaluationError(f"images of shape {a.shape} are empty")
    return a.astype(np.float64), b.astype(np.float64)


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute error in ``[0, 1]`` units.

    Parameters
    ----------
    a, b
        uint8 images ``(C, H, W)`` (0..255).

    Returns
    -------
    float
        ``mean(|a - b|) / 255``.
    """
    a, b = _as_pair(a, b)
    return float(np.mean(np.abs(a - b)) / DATA_RANGE)


def mean_l1(generated: Sequence[np.ndarray], real: Sequence[np.ndarray]) -> float:
    """Mean over image pairs of :func:`l1`: the held-out L1 of evaluation and training alike.

    Parameters
    ----------
    generated, real
        uint8 images ``(3, H, W)``, in the same order.

    Returns
    -------
    float
        The mean of the per-image L1 values (each image weighs the same).
    """
    if len(generated) != len(real) or not real:
        raise EvaluationError(f"need the same non-zero number of images, got {len(generated)} and {len(real)}")
    return float(np.mean([l1(g, r) for g, r in zip(generated, real, strict=True)]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, data range 255.

    Returns
    -------
    float
        ``10 log10(255² / MSE)``; ``inf`` when the images are identical.
    """
    a, b = _as_pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE**2 / mse)


@lru_cache(maxsize=4)
def _gaussian(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    g /= g.sum()
    g.flags.writeable = False
    return g


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable "valid" filtering of ``(C, H, W)`` with the 1-D kernel ``g`` on both axes."""
    k = len(g)
    x = sliding_window_view(x, k, axis=2) @ g  # (C, H, W-k+1)
    return sliding_window_view(x, k, axis=1) @ g  # (C, H-k+1, W-k+1)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004), averaged over channels.

    Gaussian window 11×11 with σ = 1.5, K1 = 0.01, K2 = 0.03, data range 255, population
    (weighted, unbiased=False) local statistics, mean over the windows that lie fully
    inside the image (MATLAB ``filter2(..., 'valid')`` as in the reference code).

    Parameters
    ----------
    a, b
        uint8 images ``(C, H, W)`` with ``H, W >= 11``.

    Returns
    -------
    float
        SSIM in ``[-1, 1]``; 1 for identical images.
    """
    a, b = _as_pair(a, b)
    if min(a.shape[1:]) < _SSIM_WINDOW:
        raise EvaluationError(f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} px, got {a.shape[1:]}")
    g = _gaussian(_SSIM_WINDOW, _SSIM_SIGMA)
    c1 = (_SSIM_K1 * DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * DATA_RANGE) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    per_channel = (num / den).mean(axis=(1, 2))
    return float(per_channel.mean())


def image_metrics(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """``{"l1", "psnr", "ssim"}`` of one generated image against the real one."""
    return {"l1": l1(generated, real), "psnr": psnr(generated, real), "ssim": ssim(generated, real)}
