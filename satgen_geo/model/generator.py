"""The Pix2Pix U-Net generator, state-dict compatible with the SatGen-CV research model.

Layer names and hyperparameters follow the original SatGen-CV ``Generator``
(``src/models/generator.py`` in github.com/Guereak/SatGen-CV, InstanceNorm revision), so
its ``generator_state_dict`` loads with ``strict=True``:

* every convolution is 4x4, stride 2, padding 1, zero padding, **with** bias;
* ``InstanceNorm2d`` uses the PyTorch defaults (``affine=False``,
  ``track_running_stats=False``), so the norms contribute no state-dict keys;
* ``initial_down``, ``bottleneck`` and ``final`` are ``nn.Sequential`` (keys
  ``initial_down.0.weight`` ...), the 13 blocks hold ``conv`` and ``bn`` submodules.

The bottleneck has no norm: for a 256 px tile its output is 1x1, where instance
normalisation is degenerate (it maps every channel to zero).

Inference-time dropout
----------------------
Pix2Pix keeps the decoder dropout (``up1``..``up3``, p=0.5) active at test time as its
only source of output diversity. :meth:`UNetGenerator.set_mc_dropout` switches the
model to "everything eval, Dropout train". Two ways to make those draws reproducible:

* pass ``seeds`` to :meth:`UNetGenerator.forward`, one integer per sample: each sample
  draws its dropout masks from its own ``torch.Generator`` seeded with that integer, so
  a window's output depends only on its input and its seed, not on the batch it was
  placed in nor on the global RNG (recommended for tiled inference);
* or leave ``seeds`` out and call ``torch.manual_seed`` before each batch; then draws
  come from the global RNG and depend on the batch composition.

The seeded masks can also be drawn ahead (:meth:`UNetGenerator.dropout_masks`) and passed
to :meth:`UNetGenerator.forward` as tensors: the same pixels as passing the seeds, and the
form an exported graph (ONNX, OpenVINO) takes them in, as inputs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from satgen_geo._validate import check_int

logger = logging.getLogger(__name__)

__all__ = ["MAX_CHANNELS", "MAX_FEATURES", "TILE_MULTIPLE", "UNetGenerator", "state_shapes"]

#: Input height and width must be multiples of this (8 stride-2 downsamplings).
TILE_MULTIPLE = 256
#: Largest base width ``features``: 512 gives about 3.5 billion parameters (14 GB in float32).
MAX_FEATURES = 512
#: Largest number of input or output channels.
MAX_CHANNELS = 16

#: The decoder's dropout rate; :meth:`UNetGenerator.dropout_masks` draws one random bit per unit for it.
_DROPOUT_P = 0.5


class SeededDropout(nn.Dropout):
    """``nn.Dropout`` that can take its mask from the caller.

    Without a mask it behaves exactly like ``nn.Dropout`` (global RNG). With a mask (one
    per sample, values 0 or ``1 / (1 - p)``, from :meth:`UNetGenerator.dropout_masks`)
    it multiplies by it, in training mode only.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Apply dropout: ``x`` times ``mask`` (or a fresh global-RNG mask) in training mode, else ``x``."""
        if mask is None or not self.training or self.p == 0.0:
            return F.dropout(x, self.p, self.training, self.inplace)
        return x * mask


class _DownBlock(nn.Module):
    """Conv 4x4/2 -> InstanceNorm -> LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)
        self.bn = nn.InstanceNorm2d(out_channels)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Downsample ``x`` by 2."""
        return self.act(self.bn(self.conv(x)))


class _UpBlock(nn.Module):
    """ConvTranspose 4x4/2 -> InstanceNorm -> ReLU [-> Dropout(0.5)]."""

    def __init__(self, in_channels: int, out_channels: int, dropout: bool) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)
        self.bn = nn.InstanceNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.dropout = SeededDropout(_DROPOUT_P) if dropout else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Upsample ``x`` by 2."""
        x = self.act(self.bn(self.conv(x)))
        if self.dropout is not None:
            x = self.dropout(x, mask)
        return x


class UNetGenerator(nn.Module):
    """Pix2Pix U-Net generator (8 down, 8 up, skip connections), SatGen-CV layout.

    Parameters
    ----------
    in_channels
        Mask channels (2: roads and buildings), at most :data:`MAX_CHANNELS`.
    out_channels
        Image channels (3: RGB), at most :data:`MAX_CHANNELS`.
    features
        Base width ``f``, at most :data:`MAX_FEATURES`; the encoder goes f, 2f, 4f, 8f,
        8f, 8f, 8f, 8f.

    Raises
    ------
    ConfigError
        If an argument is not a whole number in its range (``param="generator"``).

    Notes
    -----
    Input is expected in ``[-1, 1]`` with height and width multiples of
    :data:`TILE_MULTIPLE`; output is in ``[-1, 1]`` (tanh). At ``features=64`` with 2 in
    and 3 out channels the model has 54,408,579 parameters.
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 3, features: int = 64) -> None:
        super().__init__()
        check_int(in_channels, "generator", "generator in_channels", maximum=MAX_CHANNELS)
        check_int(out_channels, "generator", "generator out_channels", maximum=MAX_CHANNELS)
        check_int(features, "generator", "generator features", maximum=MAX_FEATURES)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self._mc_dropout = False
        f = features

        self.initial_down = nn.Sequential(
            nn.Conv2d(in_channels, f, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)
        )
        self.down1 = _DownBlock(f, f * 2)
        self.down2 = _DownBlock(f * 2, f * 4)
        self.down3 = _DownBlock(f * 4, f * 8)
        self.down4 = _DownBlock(f * 8, f * 8)
        self.down5 = _DownBlock(f * 8, f * 8)
        self.down6 = _DownBlock(f * 8, f * 8)
        # No norm here: at 256 px input the bottleneck is 1x1 and InstanceNorm would zero it.
        self.bottleneck = nn.Sequential(
            nn.Conv2d(f * 8, f * 8, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)
        )
        self.up1 = _UpBlock(f * 8, f * 8, dropout=True)
        self.up2 = _UpBlock(f * 16, f * 8, dropout=True)
        self.up3 = _UpBlock(f * 16, f * 8, dropout=True)
        self.up4 = _UpBlock(f * 16, f * 8, dropout=False)
        self.up5 = _UpBlock(f * 16, f * 4, dropout=False)
        self.up6 = _UpBlock(f * 8, f * 2, dropout=False)
        self.up7 = _UpBlock(f * 4, f, dropout=False)
        self.final = nn.Sequential(
            nn.ConvTranspose2d(f * 2, out_channels, kernel_size=4, stride=2, padding=1), nn.Tanh()
        )

    @property
    def mc_dropout(self) -> bool:
        """Whether inference-time dropout is on (see :meth:`set_mc_dropout`)."""
        return self._mc_dropout

    def set_mc_dropout(self, enabled: bool) -> UNetGenerator:
        """Put the model in inference mode, with or without active dropout.

        Parameters
        ----------
        enabled
            ``True``: every module in eval mode except the Dropout modules, which stay in
            training mode (Pix2Pix test-time behaviour). ``False``: plain ``eval()``.

        Returns
        -------
        UNetGenerator
            ``self``. The setting survives later ``eval()`` calls; ``train()`` clears it.
        """
        self._mc_dropout = bool(enabled)
        return self.eval()

    def train(self, mode: bool = True) -> UNetGenerator:
        """Set training mode; in eval mode keep Dropout active if MC dropout is enabled."""
        if mode:
            self._mc_dropout = False
        super().train(mode)
        if not mode and self._mc_dropout:
            for module in self.modules():
                if isinstance(module, nn.Dropout):
                    module.train(True)
        return self

    def dropout_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """``(C, H, W)`` of one sample's dropout mask in ``up1``, ``up2``, ``up3`` for a ``height`` × ``width`` input."""
        return [(self.features * 8, height >> shift, width >> shift) for shift in (7, 6, 5)]

    def dropout_masks(self, seeds: Sequence[int], height: int, width: int, device: torch.device | str = "cpu") -> list[Tensor]:
        """Seeded dropout masks for ``up1``..``up3``: one ``(N, C, H, W)`` float32 tensor each, values 0 or 2.

        Sample ``i``'s masks come from a ``torch.Generator`` on ``device`` seeded with
        ``seeds[i]``, so they depend on that seed alone. The dropout rate is 1/2, so one
        random bit keeps or drops each unit (eight units per random byte).
        """
        shapes = self.dropout_shapes(height, width)
        sizes = [math.prod(shape) for shape in shapes]
        total = sum(sizes)
        bits = torch.arange(8, dtype=torch.uint8, device=device)
        per_sample = []
        for seed in seeds:
            generator = torch.Generator(device=device).manual_seed(int(seed))
            octets = torch.randint(0, 256, (-(-total // 8),), dtype=torch.uint8, generator=generator, device=device)
            per_sample.append(((octets.unsqueeze(-1) >> bits) & 1).flatten()[:total])
        kept = torch.stack(per_sample).float().div_(1.0 - _DROPOUT_P)
        return [part.reshape(len(seeds), *shape) for part, shape in zip(kept.split(sizes, dim=1), shapes, strict=True)]

    def forward(self, x: Tensor, seeds: Sequence[int] | None = None, masks: Sequence[Tensor] | None = None) -> Tensor:
        """Translate masks to images.

        Parameters
        ----------
        x
            Masks, shape ``(N, in_channels, H, W)``, values in ``[-1, 1]``, ``H`` and ``W``
            multiples of 256.
        seeds
            Optional, one integer per sample: seeds that sample's dropout masks (only
            matters while dropout is active). ``None`` uses the global RNG.
        masks
            Instead of ``seeds``: the three dropout masks :meth:`dropout_masks` draws.

        Returns
        -------
        Tensor
            Images, shape ``(N, out_channels, H, W)``, values in ``[-1, 1]``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"generator expects input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % TILE_MULTIPLE or width % TILE_MULTIPLE or height == 0 or width == 0:
            raise ValueError(
                f"generator input height and width must be multiples of {TILE_MULTIPLE}, got {height}x{width}"
            )
        if seeds is not None:
            if len(seeds) != x.shape[0]:
                raise ValueError(f"got {len(seeds)} dropout seeds for a batch of {x.shape[0]}; pass one per sample")
            masks = self.dropout_masks(seeds, height, width, x.device)
        m1, m2, m3 = masks if masks is not None else (None, None, None)

        d1 = self.initial_down(x)
        d2 = self.down1(d1)
        d3 = self.down2(d2)
        d4 = self.down3(d3)
        d5 = self.down4(d4)
        d6 = self.down5(d5)
        d7 = self.down6(d6)
        u = self.up1(self.bottleneck(d7), m1)
        u = self.up2(torch.cat((u, d7), dim=1), m2)
        u = self.up3(torch.cat((u, d6), dim=1), m3)
        u = self.up4(torch.cat((u, d5), dim=1))
        u = self.up5(torch.cat((u, d4), dim=1))
        u = self.up6(torch.cat((u, d3), dim=1))
        u = self.up7(torch.cat((u, d2), dim=1))
        return self.final(torch.cat((u, d1), dim=1))


def state_shapes(in_channels: int = 2, out_channels: int = 3, features: int = 64) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and tensor shapes of ``UNetGenerator(in_channels, out_channels, features)``.

    The module is built on PyTorch's ``meta`` device, so no weight memory is allocated
    whatever the sizes: checkpoints are checked against this before a model is built.
    The state dict holds every parameter and nothing else (the model has no buffers).
    """
    with torch.device("meta"):
        model = UNetGenerator(in_channels, out_channels, features)
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
