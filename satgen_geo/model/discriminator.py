"""PatchGAN discriminator for Pix2Pix training on (mask, image) pairs."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def _conv(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=stride, padding=1))


class PatchDiscriminator(nn.Module):
    """70×70 PatchGAN: classifies overlapping patches of ``cat(mask, image)`` as real or fake.

    Spectrally normalised 4×4 convolutions, InstanceNorm and LeakyReLU(0.2), as in the
    SatGen-CV recipe; the output is a map of logits (use BCE-with-logits).

    Parameters
    ----------
    mask_channels, image_channels
        2 (roads, buildings) and 3 (RGB): the input has 5 channels.
    features
        Width of the first layer; later layers use 2×, 4×, 8×.
    """

    def __init__(self, mask_channels: int = 2, image_channels: int = 3, features: int = 64) -> None:
        super().__init__()
        f = features
        layers: list[nn.Module] = [_conv(mask_channels + image_channels, f, 2), nn.LeakyReLU(0.2, inplace=True)]
        for in_f, out_f, stride in ((f, 2 * f, 2), (2 * f, 4 * f, 2), (4 * f, 8 * f, 1)):
            layers += [_conv(in_f, out_f, stride), nn.InstanceNorm2d(out_f), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(_conv(8 * f, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, mask: Tensor, image: Tensor) -> Tensor:
        """Patch logits for ``image`` given ``mask``, both in [-1, 1]."""
        return self.model(torch.cat([mask, image], dim=1))
