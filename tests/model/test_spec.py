"""Tests for ModelSpec: JSON round trip, one named field per error, bounded values."""

from __future__ import annotations

import json

import pytest

from satgen_geo.errors import CheckpointError
from satgen_geo.model import ModelSpec


def test_spec_json_round_trip() -> None:
    spec = ModelSpec(features=32, name="x", provenance={"licence": "MIT", "epochs": [1, 2]})
    text = spec.to_json()
    assert json.loads(text)["channel_order"] == ["roads", "buildings"]
    assert ModelSpec.from_json(text) == spec
    assert ModelSpec.from_json(ModelSpec().to_json()) == ModelSpec()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tile_px": 300}, "tile_px"),
        ({"overlap_px": 256}, "overlap_px"),
        ({"channel_order": ["roads"]}, "channel_order"),
        ({"architecture": "resnet"}, "architecture"),
        ({"gsd_m": -1.0}, "gsd_m"),
        ({"normalisation": "x/255"}, "normalisation"),
        ({"in_channels": "2"}, "in_channels"),
        ({"features": True}, "features"),
    ],
)
def test_spec_from_json_names_bad_field(change: dict, field: str) -> None:
    data = json.loads(ModelSpec().to_json()) | change
    with pytest.raises(CheckpointError, match=f"'{field}'"):
        ModelSpec.from_json(json.dumps(data))


def test_spec_from_json_missing_field_and_bad_json() -> None:
    data = json.loads(ModelSpec().to_json())
    del data["gsd_m"]
    with pytest.raises(CheckpointError, match="'gsd_m': is missing"):
        ModelSpec.from_json(json.dumps(data))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ModelSpec.from_json("{not json")
    with pytest.raises(CheckpointError, match="JSON object"):
        ModelSpec.from_json("[1, 2]")


@pytest.mark.parametrize(
    ("change", "field", "limit"),
    [
        ({"features": 1_000_000}, "features", "from 1 to 512"),
        ({"features": 513}, "features", "from 1 to 512"),
        ({"in_channels": 17, "channel_order": [f"c{i}" for i in range(17)]}, "in_channels", "from 1 to 16"),
        ({"out_channels": 0}, "out_channels", "from 1 to 16"),
        ({"tile_px": 65536}, "tile_px", "from 256 to 4096, a multiple of 256"),
        ({"tile_px": 128, "overlap_px": 0}, "tile_px", "from 256 to 4096, a multiple of 256"),
        ({"overlap_px": 225}, "overlap_px", "from 0 to 224"),
        ({"tile_px": 1024, "overlap_px": 897}, "overlap_px", "from 0 to 896"),
        ({"overlap_px": -1}, "overlap_px", "from 0 to 224"),
        ({"gsd_m": 0.001}, "gsd_m", "at least 0.01 and at most 1000"),
        ({"gsd_m": 1e9}, "gsd_m", "at least 0.01 and at most 1000"),
    ],
)
def test_spec_values_are_bounded(change: dict, field: str, limit: str) -> None:
    """A spec cannot ask for a network or a window that would need unbounded memory."""
    data = json.loads(ModelSpec().to_json()) | change
    with pytest.raises(CheckpointError, match=f"'{field}' must be a whole number {limit}|'{field}' must be a number {limit}") as info:
        ModelSpec.from_json(json.dumps(data))
    assert info.value.param == "checkpoint"
    assert "\n" not in str(info.value) and "re-save the checkpoint" in str(info.value)


def test_spec_bounds_accept_their_extremes() -> None:
    ModelSpec(features=512)
    ModelSpec(tile_px=4096, overlap_px=3584, gsd_m=1000)
    assert ModelSpec(tile_px=256, overlap_px=224, gsd_m=0.01).gsd_m == 0.01
    assert isinstance(ModelSpec(gsd_m=2).gsd_m, float)


def test_oversized_or_deeply_nested_spec_json_is_a_checkpoint_error() -> None:
    data = json.loads(ModelSpec().to_json())
    data["provenance"] = {"notes": "x" * (1 << 20)}
    with pytest.raises(CheckpointError, match=r"model spec is [\d,]+ bytes, over the limit of 1,048,576"):
        ModelSpec.from_json(json.dumps(data))
    nested = ModelSpec().to_json()[:-1] + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ModelSpec.from_json(nested)
