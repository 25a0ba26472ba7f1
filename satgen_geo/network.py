"""Network: uint8 mask windows → float RGB windows in [-1, 1], with seeded randomness.

Randomness follows the original SatGen-CV inference (Gaussian input noise, inference-time
dropout, extra noise on empty windows), but every draw comes from a generator seeded per
window, so a window's output depends only on its mask, its seed and the batch shape.

The shared model is never changed: :class:`WindowNetwork` runs a private *inference view*
of the generator (:func:`inference_view`), made once per render under the model's lock,
with its own dropout mode and channels-last weights.
"""

from __future__ import annotations

import copy
from typing import Protocol

import numpy as np
import torch
from torch import nn

from satgen_geo.backends import Pending, Runner
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.precision import Choice, choose
from satgen_geo.rasterize import BAND_NAMES
from satgen_geo.tiling import window_seed

__all__ = ["NetworkSettings", "Pending", "WindowNetwork", "inference_view"]

#: Dropout draws use a seed stream separate from the input-noise stream.
_DROPOUT_STREAM = 0x5A7


class NetworkSettings(Protocol):
    """What :class:`WindowNetwork` reads from its settings (a :class:`satgen_geo.engine.RenderConfig`)."""

    @property
    def deterministic(self) -> bool: ...
    @property
    def backend(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def input_noise_std(self) -> float: ...
    @property
    def empty_noise_std(self) -> float: ...
    @property
    def empty_variance(self) -> float: ...


def inference_view(generator: UNetGenerator, stochastic: bool) -> UNetGenerator:
    """A copy of ``generator``'s module tree for inference; ``generator`` itself is not changed.

    Its 4-D weights are in channels-last memory format (shared with ``generator`` when they
    already are, copied otherwise), every other tensor is shared, gradients are off, and
    its dropout mode is its own: Pix2Pix test-time dropout when ``stochastic``, plain eval
    otherwise.
    """
    memo: dict[int, object] = {}
    for tensor in generator.parameters():
        weights = tensor.detach()
        if weights.ndim == 4:
            weights = weights.to(memory_format=torch.channels_last)
        memo[id(tensor)] = nn.Parameter(weights, requires_grad=False)
    for buffer in generator.buffers():
        memo[id(buffer)] = buffer.detach()
    view = copy.deepcopy(generator, memo)
    return view.set_mc_dropout(stochastic)


class WindowNetwork:
    """Turns uint8 mask windows into float RGB windows in [-1, 1], with seeded randomness.

    Call it with masks ``(batch_size, 2, tile_px, tile_px)`` uint8 in mask band order (roads,
    buildings) and one seed per window; the model spec's channel order is applied here. The
    output of a window depends on its mask, its seed, the batch size and the backend and
    precision (:attr:`choice`, resolved from the settings by
    :func:`satgen_geo.precision.choose`), never on the other windows of the batch.
    """

    def __init__(self, model: LoadedModel, settings: NetworkSettings, batch_size: int) -> None:
        self.settings = settings
        self.stochastic = not settings.deterministic
        self.order = [BAND_NAMES.index(name) for name in model.spec.channel_order]
        with model.lock:
            self.generator = inference_view(model.generator, self.stochastic)
        tile = model.spec.tile_px
        shape = (batch_size, len(self.order), tile, tile)
        self.choice: Choice
        self.runner: Runner
        self.choice, self.runner = choose(self.generator, model.sha256, model.device, settings.backend,
                                          settings.precision, shape, self.inputs)

    def __call__(self, masks: np.ndarray, seeds: list[int]) -> np.ndarray:
        return self.start(masks, seeds)()

    def start(self, masks: np.ndarray, seeds: list[int]) -> Pending:
        """Start the network on a batch; call the result for its outputs. Only a GPU keeps working meanwhile."""
        return self.runner.start(*self.inputs(masks, seeds))

    def inputs(self, masks: np.ndarray, seeds: list[int]) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The network's inputs for ``masks`` and ``seeds``: the noisy windows in [-1, 1] and the dropout masks."""
        x = torch.from_numpy(masks[:, self.order]).float()
        if not self.stochastic:
            return x.div_(127.5).sub_(1.0), None
        x = self._add_noise(x, _variances(masks) < self.settings.empty_variance, seeds)
        return x, self.generator.dropout_masks([window_seed(s, _DROPOUT_STREAM, 0) for s in seeds], *x.shape[2:])

    def _add_noise(self, x: torch.Tensor, empty: np.ndarray, seeds: list[int]) -> torch.Tensor:
        """Noise on the ``empty`` windows (0–255 units), normalisation, input noise ([-1, 1] units), in place."""
        cfg = self.settings
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        shape = x.shape[1:]
        for i in np.flatnonzero(empty).tolist():
            x[i] = (x[i] + torch.randn(shape, generator=generators[i]) * cfg.empty_noise_std).clamp_(0, 255)
        noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
        return x.div_(127.5).sub_(1.0).add_(noise.mul_(cfg.input_noise_std)).clamp_(-1.0, 1.0)


def _variances(masks: np.ndarray) -> np.ndarray:
    """Each uint8 window's variance in [0, 1] units, from exact integer sums (4× cheaper than in float)."""
    flat = masks.reshape(len(masks), -1)
    values = flat.shape[1]
    sums = flat.sum(axis=1, dtype=np.int64)
    wide = flat.astype(np.uint16)
    squares = (wide * wide).sum(axis=1, dtype=np.int64)
    return (squares / values - (sums / values) ** 2) / 255.0**2
