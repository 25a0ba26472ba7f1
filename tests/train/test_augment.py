"""Training augmentation: mask and image move together, draws come from the run's own generator."""

from __future__ import annotations

from pathlib import Path

import torch

from satgen_geo.train.augment import PairDataset
from satgen_geo.train.datasets import read_split


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(1, 2))
    return torch.flip(x, dims=(2,)) if flip else x


def test_augmentation_keeps_pairs_aligned(dataset: Path) -> None:
    pairs = read_split(dataset, "train")[:3]
    data = PairDataset(pairs, torch.Generator().manual_seed(1), jitter=0.0)
    for index, pair in enumerate(pairs):
        mask, image = data[index]
        # a dihedral transform moves mask and image the same way: find it from the mask alone
        base_mask = torch.from_numpy(pair.mask).float() / 127.5 - 1
        base_image = torch.from_numpy(pair.image).float() / 127.5 - 1
        matches = [
            (k, f) for k in range(4) for f in (False, True)
            if torch.equal(_dihedral(base_mask, k, f), mask) and torch.equal(_dihedral(base_image, k, f), image)
        ]
        assert matches


def test_augmentation_draws_from_its_generator_only(dataset: Path) -> None:
    pairs = read_split(dataset, "train")[:8]
    before = torch.get_rng_state()
    runs = [[PairDataset(pairs, torch.Generator().manual_seed(seed))[i] for i in range(len(pairs))] for seed in (5, 5, 6)]
    assert torch.equal(torch.get_rng_state(), before)
    same = [torch.equal(a[1], b[1]) for a, b in zip(runs[0], runs[1], strict=True)]
    other = [torch.equal(a[1], b[1]) for a, b in zip(runs[0], runs[2], strict=True)]
    assert all(same) and not all(other)
