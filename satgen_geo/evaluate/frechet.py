"""The Fréchet distance between Gaussians fitted to two feature sets (the "FID" formula)."""

from __future__ import annotations

import math

import numpy as np

from satgen_geo.errors import EvaluationError

__all__ = ["frechet_distance"]


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (tiny/negative eigenvalues → 0)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2.0)
    w = _clip_eigenvalues(w)
    return (v * np.sqrt(w)) @ v.T


def _clip_eigenvalues(w: np.ndarray) -> np.ndarray:
    tol = max(float(np.max(np.abs(w), initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` with sample covariances
    (``ddof=1``). ``Tr((S_a S_b)^{1/2})`` is the sum of the square roots of the
    eigenvalues of ``S_a S_b``, which are real and non-negative. With centred samples
    ``X_a``, ``X_b`` these are the squared singular values of
    ``X_a X_b^T / sqrt((n_a - 1)(n_b - 1))``, so when there are no more samples than
    dimensions the trace is that matrix's nuclear norm (a small SVD, exact for singular
    covariances); otherwise it comes from the eigenvalues of the symmetric
    ``sqrt(S_a) S_b sqrt(S_a)``, clipping rounding-level negatives.

    Parameters
    ----------
    feats_a, feats_b
        ``(n_a, d)`` and ``(n_b, d)`` with ``n_a, n_b >= 2``.

    Returns
    -------
    float
        A non-negative distance (0 for identical sets, up to rounding).
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise EvaluationError(f"feature sets must be (n, d) with the same d, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise EvaluationError(f"the Fréchet distance needs at least 2 samples per set, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise EvaluationError("feature sets contain NaN or infinite values")
    (n_a, dims), n_b = a.shape, len(b)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    xa, xb = a - mu_a, b - mu_b
    trace_a = float((xa * xa).sum()) / (n_a - 1)
    trace_b = float((xb * xb).sum()) / (n_b - 1)
    if max(n_a, n_b) <= dims:
        singular = np.linalg.svd(xa @ xb.T, compute_uv=False)
        trace_sqrt = float(singular.sum()) / math.sqrt((n_a - 1) * (n_b - 1))
    else:
        cov_a, cov_b = xa.T @ xa / (n_a - 1), xb.T @ xb / (n_b - 1)
        root_a = _psd_sqrt(cov_a)
        inner = root_a @ cov_b @ root_a
        eig = _clip_eigenvalues(np.linalg.eigvalsh((inner + inner.T) / 2.0))
        trace_sqrt = float(np.sqrt(eig).sum())
    diff = mu_a - mu_b
    value = float(diff @ diff) + trace_a + trace_b - 2.0 * trace_sqrt
    return max(value, 0.0)


