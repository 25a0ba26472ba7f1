"""Checkerboard remedies for training: ICNR initialisation and a period-2 loss.

A 4x4 stride-2 transposed convolution (the SatGen-CV U-Net upsamples with eight of them)
tends to paint a period-2 pattern. :func:`icnr_init_` starts each one as nearest-neighbour
upsampling plus a 3x3 convolution; :func:`period2_loss` penalises what training brings back.
Its spectral part is the differentiable, batched counterpart of
:func:`satgen_geo.evaluate.quality.checkerboard_score` and uses the same luminance weights
and neighbour lines (:data:`~satgen_geo.evaluate.quality.LUMA_WEIGHTS`,
:data:`~satgen_geo.evaluate.quality.NEIGHBOUR_BINS`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from satgen_geo.evaluate.quality import LUMA_WEIGHTS, NEIGHBOUR_BINS
from satgen_geo.model.generator import UNetGenerator

_LUMA = torch.tensor(LUMA_WEIGHTS)
_EPS = 1e-12


def icnr_init_(generator: UNetGenerator) -> None:
    """Make every transposed convolution of ``generator`` start as nearest-neighbour upsampling + a 3x3 convolution.

    A 4x4 stride-2 transposed convolution equals zero-insertion followed by a 4x4 filter;
    with the filter a random 3x3 kernel convolved with a 2x2 box, that is nearest-neighbour
    upsampling followed by the 3x3 kernel, whose response is zero at the period-2 frequency:
    no checkerboard at the start (ICNR, Aitken et al. 2017). The 3x3 kernels are the top-left
    taps of the default initialisation, rescaled to its standard deviation; the layer
    shapes (and so the checkpoint format) do not change.
    """
    box = torch.ones(1, 1, 2, 2)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.ConvTranspose2d):
                weight = module.weight  # (in, out, 4, 4)
                small = weight[:, :, :3, :3].reshape(-1, 1, 3, 3)
                full = nn.functional.conv2d(nn.functional.pad(small, (1, 1, 1, 1)), box).reshape(weight.shape)
                weight.copy_(full * (weight.std() / full.std()))


def period2_ratios(images: Tensor) -> Tensor:
    """Log period-2 peak of each image's luminance spectrum, along x and y: ``(N, 2)``.

    The differentiable counterpart of :func:`satgen_geo.evaluate.quality.checkerboard_score`
    (same Hann window and neighbour lines): the log of the mean power on the period-2 line
    over the mean power on the lines 2 to 8 bins below it; 0 means no peak.
    """
    luma = torch.tensordot(_LUMA.to(images), images, dims=([0], [1]))  # (N, H, W)
    luma = luma - luma.mean(dim=(1, 2), keepdim=True)
    height, width = luma.shape[-2:]
    window = torch.outer(torch.hann_window(height, periodic=False), torch.hann_window(width, periodic=False))
    luma = luma * window.to(luma)
    ratios = []
    for spectrum in (torch.fft.rfft2(luma), torch.fft.rfft2(luma.transpose(1, 2))):
        power = spectrum.real**2 + spectrum.imag**2
        nyquist = power.shape[-1] - 1
        line = power[..., nyquist].mean(dim=-1)
        neighbours = power[..., nyquist - NEIGHBOUR_BINS[-1] : nyquist - NEIGHBOUR_BINS[0] + 1].mean(dim=(-2, -1))
        ratios.append(torch.log((line + _EPS) / (neighbours + _EPS)))
    return torch.stack(ratios, dim=1)


def period2_means(images: Tensor) -> Tensor:
    """The image-wide period-2 patterns of each colour channel: ``(N, 3C)``, in uint8 levels.

    Each 2x2 cell is split into its column, row and diagonal alternations (``±1`` patterns
    over the cell, divided by 4), and these are averaged over the whole image: texture
    averages out, a checkerboard that repeats everywhere (a stride-2 upsampling's bias, in
    colour) remains. Real photos give about 0; v1 about ±1 level.
    """
    kernels = torch.tensor([[[1.0, -1.0], [1.0, -1.0]], [[1.0, 1.0], [-1.0, -1.0]], [[1.0, -1.0], [-1.0, 1.0]]]) / 4
    channels = images.shape[1]
    weight = kernels.to(images).repeat(channels, 1, 1).unsqueeze(1)  # (3C, 1, 2, 2)
    cells = nn.functional.conv2d(images, weight, stride=2, groups=channels)
    return cells.mean(dim=(2, 3)) * 127.5


def period2_loss(generated: Tensor, target: Tensor) -> Tensor:
    """Checkerboard penalty: coherent colour patterns plus period-2 spectral peaks above the real images'.

    The sum of (1) the mean absolute difference of :func:`period2_means` (uint8 levels) and
    (2) the mean over images and axes of ``max(0, log peak(generated) - log peak(real))`` of
    :func:`period2_ratios` (a spectral regulariser after Durall et al., CVPR 2020). Texture
    that is neither costs nothing.
    """
    with torch.no_grad():
        real_ratios, real_means = period2_ratios(target), period2_means(target)
    peaks = (period2_ratios(generated) - real_ratios).clamp(min=0).mean()
    return (period2_means(generated) - real_means).abs().mean() + peaks
