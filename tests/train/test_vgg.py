"""The VGG-19 perceptual loss: weights from a local file only, frozen features at the right layers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from satgen_geo.errors import CheckpointError
from satgen_geo.train.vgg import PERCEPTUAL_LAYERS, PerceptualLoss, load_vgg_weights, perceptual_loss, vgg19_features


def test_vgg_weight_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="perceptual loss weight to 0") as caught:
        perceptual_loss(tmp_path / "missing.pth")
    assert caught.value.param == "vgg_weights" and "--" not in str(caught.value)
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not a VGG-19"):
        load_vgg_weights(vgg19_features(), bad)


def test_perceptual_loss_taps_frozen_relus() -> None:
    loss = PerceptualLoss(vgg19_features())
    # relu1_2 .. relu5_4: each tap is a ReLU right after a convolution of the expected width
    taps = [loss.features[i] for i in PERCEPTUAL_LAYERS]
    assert all(isinstance(t, torch.nn.ReLU) for t in taps)
    assert [loss.features[i - 1].out_channels for i in PERCEPTUAL_LAYERS] == [64, 128, 256, 512, 512]
    assert len(loss.features) == PERCEPTUAL_LAYERS[-1] + 1 and not loss.features.training
    generated = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    loss(generated, torch.zeros(1, 3, 32, 32)).backward()
    assert generated.grad is not None and generated.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())  # VGG-19 itself stays fixed
