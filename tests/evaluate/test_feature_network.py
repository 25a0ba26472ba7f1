"""The offline feature network (EfficientNet-Lite0) on real images, and its optional install."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from satgen_geo import evaluate as ev
from tests.conftest import SHARED

INRIA = SHARED / "data" / "train" / "inria-austin"


@pytest.fixture(scope="module")
def extractor() -> ev.FeatureExtractor:
    return ev.FeatureExtractor("cpu")


def test_feature_extractor_on_real_images(extractor: ev.FeatureExtractor) -> None:
    paths = sorted((INRIA / "images").glob("*.png"))[:3]
    assert paths, f"no test images in {INRIA}"
    images = [np.moveaxis(np.asarray(Image.open(p).convert("RGB")), -1, 0) for p in paths]
    feats = extractor(images)
    assert feats.shape == (3, 1280) and feats.dtype == np.float64
    assert np.isfinite(feats).all() and feats.std() > 0
    np.testing.assert_allclose(extractor(images[:1]), feats[:1], rtol=1e-4, atol=1e-5)  # batch-size rounding
    # Real aerial images are closer to each other than to flat grey images.
    grey = [np.full_like(images[0], 128), np.full_like(images[0], 60), np.full_like(images[0], 200)]
    assert ev.frechet_distance(feats, extractor(grey)) > ev.frechet_distance(feats[:2], feats[1:])


def test_feature_extractor_missing_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ev.MissingDependencyError, match=r"pip install 'satgen-geo\[eval\]'"):
        ev.FeatureExtractor()


