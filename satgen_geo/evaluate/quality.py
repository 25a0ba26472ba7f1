"""What a user sees at 1:1: checkerboard artefacts and the colour of rendered roofs.

Pure numpy measurements on uint8 RGB images ``(3, H, W)``; the model-quality benchmark
(``benchmarks/bench_model_quality.py``) applies them to renders and to real imagery side by side.

* :func:`checkerboard_score`: power on the period-2 (Nyquist) line of the luminance spectrum
  over the mean power on the lines just below it, for columns (x) and rows (y). A stride-2
  upsampling artefact puts a peak there; for white noise the score is about 1, for natural
  imagery (whose spectrum falls with frequency) below 1.
* :func:`roof_colour`: mean colour and greenness ``G - (R + B) / 2`` inside painted buildings,
  and their contrast with the ground in a ring around them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from satgen_geo.errors import EvaluationError

__all__ = ["CheckerboardScore", "RoofColour", "checkerboard_score", "greenness", "house_grid_mask", "luma", "roof_colour"]

#: Luminance weights of RGB (ITU-R BT.601), shared with the training loss (:mod:`satgen_geo.train.checkerboard`).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_LUMA = np.array(LUMA_WEIGHTS)
#: Neighbour lines of the Nyquist line, in frequency bins below it: the first is skipped (the
#: Hann window spreads a peak over ±1 bin), the rest are the reference.
NEIGHBOUR_BINS = range(2, 9)
_MIN_SIDE = 32


@dataclass(frozen=True)
class CheckerboardScore:
    """Period-2 power over neighbourhood power, along x (alternating columns) and y (rows)."""

    x: float
    y: float

    @property
    def worst(self) -> float:
        """The larger of the two."""
        return max(self.x, self.y)


@dataclass(frozen=True)
class RoofColour:
    """Colour inside painted buildings and in a ground ring around them (uint8 units).

    ``greenness`` is the per-pixel ``G - (R + B) / 2`` of the building pixels (for
    percentiles over several images); ``contrast`` is the Euclidean RGB distance between the
    mean building colour and the mean ring colour, ``luma_contrast`` their luma difference
    (building minus ground).
    """

    mean_rgb: tuple[float, float, float]
    ring_rgb: tuple[float, float, float]
    greenness: np.ndarray
    n_pixels: int

    @property
    def mean_greenness(self) -> float:
        """``G - (R + B) / 2`` of the mean building colour."""
        r, g, b = self.mean_rgb
        return g - (r + b) / 2

    @property
    def contrast(self) -> float:
        """RGB distance between the mean building and ring colours."""
        return float(np.linalg.norm(np.subtract(self.mean_rgb, self.ring_rgb)))

    @property
    def luma_contrast(self) -> float:
        """Luma of the buildings minus luma of the ring."""
        return float(_LUMA @ np.subtract(self.mean_rgb, self.ring_rgb))


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if np.ndim(image) != 3 or np.shape(image)[0] != 3:
        raise EvaluationError(f"expected an RGB image (3, H, W), got shape {np.shape(image)}")
    return np.asarray(image, dtype=np.float64)


def luma(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma ``(H, W)`` of an RGB image ``(3, H, W)``."""
    return np.tensordot(_LUMA, _check_rgb(image), axes=1)


def greenness(image: np.ndarray) -> np.ndarray:
    """Per-pixel ``G - (R + B) / 2`` ``(H, W)`` of an RGB image ``(3, H, W)``."""
    r, g, b = _check_rgb(image)
    return g - (r + b) / 2


def checkerboard_score(image: np.ndarray) -> CheckerboardScore:
    """How strongly a period-2 pattern stands out of the luminance spectrum.

    The luminance (mean removed, Hann-windowed) is Fourier transformed; along x the score is
    the mean power on the line of horizontal frequency 1/2 cycle/px (all vertical
    frequencies) over the mean power on the lines 2 to 8 bins below it; along y the same
    for rows. 1 means the period-2 line is as strong as its neighbours.

    Raises
    ------
    EvaluationError
        If the image is not RGB or a side is shorter than 32 px.
    """
    y = luma(image)
    height, width = y.shape
    if min(height, width) < _MIN_SIDE:
        raise EvaluationError(f"the checkerboard score needs at least {_MIN_SIDE}x{_MIN_SIDE} px, got {height}x{width}")
    y = y - y.mean()
    y = y * np.outer(np.hanning(height), np.hanning(width))
    power = np.abs(np.fft.rfft2(y)) ** 2  # (height, width // 2 + 1)
    x_score = _line_ratio(power, width)
    y_power = np.abs(np.fft.rfft2(y.T)) ** 2
    return CheckerboardScore(x=x_score, y=_line_ratio(y_power, height))


def _line_ratio(power: np.ndarray, side: int) -> float:
    """Power on the Nyquist column of an rfft2 spectrum over its neighbour columns."""
    nyquist = side // 2  # the last rfft column for even sides; the highest frequency below 1/2 for odd ones
    line = power[:, nyquist].mean()
    reference = np.mean([power[:, nyquist - d].mean() for d in NEIGHBOUR_BINS])
    return float(line / reference) if reference > 0 else float("inf") if line > 0 else 1.0


def roof_colour(image: np.ndarray, buildings: np.ndarray, ring_px: int = 4) -> RoofColour | None:
    """Colour of ``image`` inside the ``buildings`` mask and in a ``ring_px`` ring around it.

    The ring is the mask dilated by ``ring_px`` pixels minus the mask dilated by 1 (so the
    blurred edge belongs to neither). Returns ``None`` when the mask or its ring is empty.
    """
    rgb = _check_rgb(image)
    inside = np.asarray(buildings, dtype=bool)
    if inside.shape != rgb.shape[1:]:
        raise EvaluationError(f"building mask {inside.shape} does not match the image {rgb.shape[1:]}")
    grown = ndimage.binary_dilation(inside, iterations=ring_px)
    ring = grown & ~ndimage.binary_dilation(inside, iterations=1)
    if not inside.any() or not ring.any():
        return None
    pixels = rgb[:, inside]
    return RoofColour(
        mean_rgb=_triple(pixels.mean(axis=1)), ring_rgb=_triple(rgb[:, ring].mean(axis=1)),
        greenness=pixels[1] - (pixels[0] + pixels[2]) / 2, n_pixels=int(inside.sum()),
    )


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


def house_grid_mask(size: int = 512, block: int = 128) -> np.ndarray:
    """A synthetic suburb mask ``(2, size, size)`` uint8 (roads, buildings; 0/255).

    Streets 6 px wide every ``block`` px both ways; along both sides of each east-west
    street, 12 × 10 px houses every 22 px, set back 6 px, none on a crossing street.
    """
    mask = np.zeros((2, size, size), dtype=np.uint8)
    streets = range(block // 2 - 3, size, block)
    for c in streets:
        mask[0, c : c + 6, :] = 255
        mask[0, :, c : c + 6] = 255
    for street in streets:
        for x in range(4, size, 22):
            if any(c - 12 <= x <= c + 6 for c in streets):
                continue
            for top in (street - 16, street + 12):
                mask[1, max(top, 0) : top + 10, x : x + 12] = 255
    return mask
