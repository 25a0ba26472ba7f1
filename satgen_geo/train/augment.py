"""Training-time data: paired geometric augmentation and colour jitter on the target only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from satgen_geo.train.datasets import Pair


def to_unit(array: np.ndarray) -> Tensor:
    """uint8 0..255 → float32 tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).float() / 127.5 - 1.0


class PairDataset(Dataset):
    """Pairs as ``(mask, image)`` tensors in [-1, 1], optionally augmented.

    Augmentation: one of the 8 flips/90° rotations applied to mask and image together,
    then mild brightness/contrast/saturation jitter on the image only (the mask is the
    condition and must stay exact).

    Parameters
    ----------
    pairs
        The training pairs.
    generator
        Where the augmentation draws come from (torch's global RNG is not used); read
        from one process (``num_workers=0``), it makes the augmentations reproducible.
    augment
        ``False`` returns the pairs as they are.
    jitter
        Colour jitter strength: factors in ``1 ± jitter``.
    """

    def __init__(self, pairs: Sequence[Pair], generator: torch.Generator, augment: bool = True, jitter: float = 0.1) -> None:
        self.pairs, self.generator, self.augment, self.jitter = list(pairs), generator, augment, jitter

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        pair = self.pairs[index]
        mask, image = to_unit(pair.mask), to_unit(pair.image)
        if self.augment:
            k = int(torch.randint(4, (), generator=self.generator))
            flip = bool(torch.randint(2, (), generator=self.generator))
            mask, image = (_dihedral(t, k, flip) for t in (mask, image))
            image = _jitter(image, self.jitter, self.generator)
        return mask, image


def _dihedral(x: Tensor, k: int, flip: bool) -> Tensor:
    x = torch.rot90(x, k, dims=(1, 2))
    return torch.flip(x, dims=(2,)) if flip else x


def _jitter(image: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Random brightness, contrast and saturation factors in ``1 ± strength``."""
    if strength <= 0:
        return image
    b, c, s = (1.0 + strength * (2 * torch.rand(3, generator=generator) - 1)).tolist()
    x = (image + 1) / 2 * b
    mean = x.mean()
    x = (x - mean) * c + mean
    grey = x.mean(dim=0, keepdim=True)
    x = (x - grey) * s + grey
    return (x.clamp(0, 1) * 2 - 1).contiguous()
