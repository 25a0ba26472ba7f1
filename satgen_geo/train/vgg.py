"""VGG-19 features for the perceptual loss, with weights from a local file (no downloads)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from satgen_geo.errors import CheckpointError

log = logging.getLogger(__name__)

#: torchvision's VGG-19 ``features`` layout: channels per conv, "M" for max-pooling.
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
#: Indices in ``features`` of relu1_2, relu2_2, relu3_4, relu4_4, relu5_4 and their loss weights.
PERCEPTUAL_LAYERS = (3, 8, 17, 26, 35)
PERCEPTUAL_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
#: Where torchvision caches the ImageNet VGG-19 weights, if a user has them.
TORCHVISION_CACHE = Path(torch.hub.get_dir()) / "checkpoints" / "vgg19-dcbb9e9d.pth"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_FIX = (
    "give the VGG-19 weights file (torchvision's vgg19-dcbb9e9d.pth), "
    "or set the perceptual loss weight to 0 to train without it"
)


def vgg19_features() -> nn.Sequential:
    """An untrained VGG-19 ``features`` stack with torchvision's module indices."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG19:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*layers[: PERCEPTUAL_LAYERS[-1] + 1])


def load_vgg_weights(features: nn.Sequential, path: str | Path) -> None:
    """Load torchvision ``vgg19`` weights (``features.N.*`` keys) from a local ``.pth`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VGG-19 weights {path} not found; {_FIX}", param="vgg_weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"cannot read VGG-19 weights {path} ({type(err).__name__}); expected torchvision's vgg19 .pth",
            param="vgg_weights",
        ) from None
    wanted = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    own = features.state_dict()
    missing = [k for k in own if k not in wanted]
    if missing:
        raise CheckpointError(
            f"{path} is not a VGG-19 checkpoint (missing {missing[:3]}); expected torchvision's vgg19 .pth",
            param="vgg_weights",
        )
    features.load_state_dict({k: wanted[k] for k in own})


class PerceptualLoss(nn.Module):
    """Multi-layer VGG-19 perceptual loss: weighted L1 between features of two images in [-1, 1]."""

    mean: Tensor
    std: Tensor

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def _taps(self, x: Tensor) -> list[Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in PERCEPTUAL_LAYERS:
                taps.append(x)
        return taps

    def forward(self, generated: Tensor, target: Tensor) -> Tensor:
        """The weighted sum of per-layer L1 distances (one pass through VGG per image)."""
        with torch.no_grad():
            targets = self._taps(target)
        pairs = zip(self._taps(generated), targets, PERCEPTUAL_WEIGHTS, strict=True)
        return sum(w * nn.functional.l1_loss(g, t) for g, t, w in pairs)  # type: ignore[return-value]


def perceptual_loss(weights: str | Path | None) -> PerceptualLoss:
    """The perceptual loss with weights from ``weights``, else torchvision's cache; clear error if neither."""
    path = Path(weights) if weights else TORCHVISION_CACHE
    if not weights and not path.is_file():
        raise CheckpointError(
            f"the perceptual loss needs ImageNet VGG-19 weights and none can be downloaded here; {_FIX}",
            param="vgg_weights",
        )
    features = vgg19_features()
    load_vgg_weights(features, path)
    log.info("perceptual loss: VGG-19 weights from %s", path)
    return PerceptualLoss(features)
