"""The generator network, its spec and checkpoint IO."""

from satgen_geo.model.checkpoint import (
    SATGEN_CHANNELS,
    SPEC_METADATA_KEY,
    CheckpointFormat,
    count_parameters,
    describe_checkpoint,
    load_generator,
    save_generator,
)
from satgen_geo.model.generator import TILE_MULTIPLE, UNetGenerator
from satgen_geo.model.spec import ARCHITECTURE, NORMALISATIONS, ModelSpec

__all__ = [
    "ARCHITECTURE",
    "NORMALISATIONS",
    "SATGEN_CHANNELS",
    "SPEC_METADATA_KEY",
    "TILE_MULTIPLE",
    "CheckpointFormat",
    "ModelSpec",
    "UNetGenerator",
    "count_parameters",
    "describe_checkpoint",
    "load_generator",
    "save_generator",
]
