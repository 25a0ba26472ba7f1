"""The two baselines that put a model's numbers in context, evaluated on the same pairs.

* **mean colour**: a constant image of the mean training colour (the L1-friendly guess of
  a model that learned nothing from the mask);
* **random init**: an untrained generator of the same shape, run exactly like the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from satgen_geo.errors import EvaluationError
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.model.spec import ModelSpec
from satgen_geo.train.datasets import Pair, split_images
from satgen_geo.train.rng import seeded_init

__all__ = ["MeanColour", "mean_colour_images", "random_init_model", "split_mean_colour"]


@dataclass(frozen=True)
class MeanColour:
    """The RGB colour (0..255) of the mean-colour baseline and where it came from.

    Parameters
    ----------
    rgb
        Three finite values, normally the mean of the training images.
    source
        A description of where ``rgb`` came from, for the report.
    """

    rgb: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        colour = np.asarray(self.rgb, dtype=np.float64).reshape(-1)
        if colour.shape != (3,) or not np.isfinite(colour).all():
            raise EvaluationError(f"the mean colour must be three finite RGB values, got {self.rgb!r}")
        object.__setattr__(self, "rgb", tuple(float(c) for c in colour))

    @classmethod
    def of_pairs(cls, pairs: Sequence[Pair]) -> MeanColour:
        """The mean colour of the evaluated images themselves (when no training mean is given)."""
        rgb = np.mean([p.image.reshape(3, -1).mean(axis=1) for p in pairs], axis=0)
        return cls(tuple(rgb), f"mean of the {len(pairs)} evaluated real images (no training mean given)")

    def report(self) -> dict[str, object]:
        """The report's description of the baseline (before its metrics)."""
        return {"rgb": [round(c, 3) for c in self.rgb], "source": self.source}


def mean_colour_images(colour: MeanColour, pairs: Sequence[Pair]) -> list[np.ndarray]:
    """One constant uint8 image of ``colour`` per pair, shaped like its real image (views, no copies)."""
    colour_u8 = np.clip(np.rint(np.asarray(colour.rgb)), 0, 255).astype(np.uint8)
    return [np.broadcast_to(colour_u8[:, None, None], p.image.shape) for p in pairs]


def split_mean_colour(root: str | Path, split: str) -> tuple[np.ndarray, int] | None:
    """Mean RGB of the images of one prepared split, streamed one image at a time; ``None`` if empty.

    Returns
    -------
    tuple or None
        ``(rgb, image count)``; every pixel weighs the same.
    """
    paths = split_images(root, split)
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


def random_init_model(spec: ModelSpec, device: torch.device, seed: int) -> LoadedModel:
    """An untrained generator shaped like ``spec``, its weights drawn from ``seed``.

    The draws come from a seeded fork of torch's global RNG, so the caller's random state
    is left as it was.
    """
    with seeded_init(seed):
        untrained = UNetGenerator(spec.in_channels, spec.out_channels, spec.features)
    return LoadedModel(untrained.to(device), spec, device, "random init", "-")
