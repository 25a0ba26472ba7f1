"""A training run's own random streams: torch's global RNG is never seeded or advanced.

Each kind of draw has its own ``torch.Generator``. At the start of every epoch all four are
seeded from ``(seed, epoch)``, so a run reproduces exactly for the same seed, a run resumed
at an epoch boundary continues exactly as if it had never stopped (nothing random needs to
be stored in the checkpoint), and the caller's random state is left as it was:

* ``data``: the order of the training pairs in each epoch;
* ``augment``: the flips/rotations and the colour jitter of each pair;
* ``noise``: the input noise added to the masks;
* ``dropout``: per-sample seeds of the generator's dropout masks.

Initial weights are the one exception PyTorch forces: modules draw them from the global
RNG while they are built, so :func:`seeded_init` builds them inside a seeded *fork* of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import Tensor

__all__ = ["SEED_RANGE", "RunStreams", "seeded_init"]

#: Accepted run seeds: what ``torch.manual_seed`` accepts (the render's range too).
SEED_RANGE = (-(1 << 63), (1 << 64) - 1)
_DROPOUT_SEED_LIMIT = (1 << 63) - 1  # randint's exclusive bound must fit int64


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Build modules inside this block: their initial weights come from ``seed``.

    The block runs on a fork of torch's CPU random state, restored when it ends.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class RunStreams:
    """The four generators of one run (on the CPU; see the module docstring)."""

    data: torch.Generator = field(default_factory=torch.Generator)
    augment: torch.Generator = field(default_factory=torch.Generator)
    noise: torch.Generator = field(default_factory=torch.Generator)
    dropout: torch.Generator = field(default_factory=torch.Generator)

    def start_epoch(self, seed: int, epoch: int) -> None:
        """Seed every stream for ``epoch`` of the run seeded ``seed``, in place.

        NumPy's ``SeedSequence`` spreads ``(seed, epoch)`` into one independent seed per stream.
        """
        streams = fields(self)
        entropy = [seed % (1 << 64), epoch]  # SeedSequence takes non-negative integers: -1 is 2**64 - 1, as in torch
        words = np.random.SeedSequence(entropy).generate_state(len(streams), dtype=np.uint64)
        for stream, word in zip(streams, words, strict=True):
            getattr(self, stream.name).manual_seed(int(word))

    def noise_like(self, x: Tensor, std: float) -> Tensor:
        """Gaussian noise of ``std`` shaped like ``x``, on the CPU."""
        return torch.randn(x.shape, generator=self.noise) * std

    def dropout_seeds(self, count: int) -> list[int]:
        """One dropout seed per sample of a batch."""
        return torch.randint(0, _DROPOUT_SEED_LIMIT, (count,), generator=self.dropout).tolist()
