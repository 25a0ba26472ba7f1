"""Tests for the U-Net generator: layout, shapes, range and inference-time dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from satgen_geo.model import UNetGenerator, count_parameters

FEATURES = 8


@pytest.fixture(scope="module")
def small() -> UNetGenerator:
    torch.manual_seed(0)
    return UNetGenerator(features=FEATURES).eval()


def _masks(n: int = 1, height: int = 256, width: int = 256, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 2, height, width, generator=g) > 0.7).float() * 2 - 1


def test_parameter_count_matches_satgen_cv_at_64_features() -> None:
    # SatGen-CV's README quotes ~54.4M; convs with bias, non-affine InstanceNorm.
    assert count_parameters(UNetGenerator(in_channels=2, out_channels=3, features=64)) == 54_408_579


def test_state_dict_keys_follow_original_layout(small: UNetGenerator) -> None:
    keys = set(small.state_dict())
    expected = {
        "initial_down.0.weight",
        "initial_down.0.bias",
        "bottleneck.0.weight",
        "bottleneck.0.bias",
        "final.0.weight",
        "final.0.bias",
    }
    expected |= {
        f"{block}.conv.{p}"
        for block in [f"down{i}" for i in range(1, 7)] + [f"up{i}" for i in range(1, 8)]
        for p in ("weight", "bias")
    }
    assert keys == expected  # no norm keys: InstanceNorm is non-affine without running stats
    assert tuple(small.state_dict()["initial_down.0.weight"].shape) == (FEATURES, 2, 4, 4)
    assert tuple(small.state_dict()["final.0.weight"].shape) == (2 * FEATURES, 3, 4, 4)
    assert tuple(small.state_dict()["up2.conv.weight"].shape) == (16 * FEATURES, 8 * FEATURES, 4, 4)


def test_output_shape_and_range(small: UNetGenerator) -> None:
    with torch.no_grad():
        out = small(_masks(2) * 50.0)  # large inputs push tanh towards saturation
    assert out.shape == (2, 3, 256, 256)
    assert out.dtype == torch.float32
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    assert float(out.std()) > 0.0


@pytest.mark.parametrize(("height", "width"), [(512, 512), (256, 512)])
def test_larger_inputs_multiple_of_256(small: UNetGenerator, height: int, width: int) -> None:
    with torch.no_grad():
        out = small(_masks(1, height, width))
    assert out.shape == (1, 3, height, width)


@pytest.mark.parametrize(
    ("shape", "match"),
    [((1, 2, 300, 256), "multiples of 256"), ((1, 3, 256, 256), r"\(N, 2, H, W\)"), ((2, 256, 256), r"\(N, 2, H, W\)")],
)
def test_bad_input_shape_is_rejected(small: UNetGenerator, shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        small(torch.zeros(shape))


def test_training_mode_forward_at_256_works() -> None:
    # The bottleneck is 1x1 at 256 px; it has no InstanceNorm, which would fail in training.
    model = UNetGenerator(features=FEATURES).train()
    out = model(_masks(1))
    out.mean().backward()
    assert model.bottleneck[0].weight.grad is not None


def test_eval_without_dropout_is_deterministic(small: UNetGenerator) -> None:
    x = _masks(1)
    small.set_mc_dropout(False)
    with torch.no_grad():
        torch.manual_seed(1)
        a = small(x)
        torch.manual_seed(2)
        b = small(x)
    assert torch.equal(a, b)


def test_mc_dropout_only_dropout_in_training_mode() -> None:
    model = UNetGenerator(features=FEATURES).set_mc_dropout(True)
    training = [m for m in model.modules() if m.training]
    assert len(training) == 3 and all(isinstance(m, nn.Dropout) for m in training)
    assert all(not m.training for m in model.modules() if isinstance(m, nn.InstanceNorm2d))
    model.eval()  # a later eval() keeps the inference-dropout setting
    assert model.mc_dropout and sum(m.training for m in model.modules()) == 3
    model.set_mc_dropout(False)
    assert not any(m.training for m in model.modules())
    model.set_mc_dropout(True).train()
    assert not model.mc_dropout and all(m.training for m in model.modules())


def test_mc_dropout_global_seed_reproducible(small: UNetGenerator) -> None:
    x = _masks(1)
    small.set_mc_dropout(True)
    try:
        with torch.no_grad():
            torch.manual_seed(7)
            a = small(x)
            torch.manual_seed(7)
            b = small(x)
            torch.manual_seed(8)
            c = small(x)
            small.set_mc_dropout(False)
            plain = small(x)
    finally:
        small.set_mc_dropout(False)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, plain)


def test_mc_dropout_per_sample_seeds_independent_of_batch(small: UNetGenerator) -> None:
    x = _masks(2)
    small.set_mc_dropout(True)
    try:
        with torch.no_grad():
            torch.manual_seed(0)
            batch = small(x, seeds=[11, 12])
            torch.manual_seed(999)  # the global RNG must not matter
            first = small(x[:1], seeds=[11])
            second = small(x[1:], seeds=[12])
            other = small(x[:1], seeds=[13])
    finally:
        small.set_mc_dropout(False)
    torch.testing.assert_close(batch[:1], first, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch[1:], second, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(first, other)
    with pytest.raises(ValueError, match="one per sample"):
        small(x, seeds=[1])


def test_invalid_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="features"):
        UNetGenerator(features=0)
