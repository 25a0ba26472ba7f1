"""A JSON-serialisable description of a generator checkpoint: architecture and how to feed it."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NoReturn

from satgen_geo.errors import CheckpointError

logger = logging.getLogger(__name__)

__all__ = ["ARCHITECTURE", "NORMALISATIONS", "ModelSpec"]

#: The only architecture this package implements (:class:`~satgen_geo.model.UNetGenerator`).
ARCHITECTURE = "satgen-unet-v1"
#: Known input/output scalings. ``"x/127.5-1"``: masks and images as 0..255 mapped to [-1, 1].
NORMALISATIONS = ("x/127.5-1",)
_TILE_MULTIPLE = 256


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint is and how to use it.

    Parameters
    ----------
    architecture
        Network layout; only ``"satgen-unet-v1"`` is known.
    in_channels, out_channels, features
        Generator shape (see :class:`~satgen_geo.model.UNetGenerator`).
    channel_order
        Meaning of each input channel, in order; ``len == in_channels``.
    gsd_m
        Ground sampling distance the model was trained at, metres per pixel.
    tile_px
        Inference window size in pixels (multiple of 256).
    overlap_px
        Overlap between neighbouring windows, ``0 <= overlap_px < tile_px``.
    normalisation
        How masks/images map to the network's value range.
    name
        Short human-readable name.
    provenance
        Free text or a JSON-compatible dict (source, licence, training notes).
    """

    architecture: str = ARCHITECTURE
    in_channels: int = 2
    out_channels: int = 3
    features: int = 64
    channel_order: tuple[str, ...] = ("roads", "buildings")
    gsd_m: float = 1.0
    tile_px: int = 256
    overlap_px: int = 128
    normalisation: str = "x/127.5-1"
    name: str = "satgen-unet"
    provenance: str | dict[str, Any] = field(default="", hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.channel_order, list):
            object.__setattr__(self, "channel_order", tuple(self.channel_order))
        if isinstance(self.gsd_m, int) and not isinstance(self.gsd_m, bool):
            object.__setattr__(self, "gsd_m", float(self.gsd_m))
        self._validate()

    def _validate(self) -> None:
        """Raise :class:`CheckpointError` naming the first invalid field."""
        if self.architecture != ARCHITECTURE:
            _bad(
                "architecture",
                f"unknown architecture {self.architecture!r}; this version of satgen supports {ARCHITECTURE!r}",
            )
        for name in ("in_channels", "out_channels", "features", "tile_px"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _bad(name, f"must be a positive integer, got {value!r}")
        if self.tile_px % _TILE_MULTIPLE:
            _bad("tile_px", f"must be a multiple of {_TILE_MULTIPLE}, got {self.tile_px}")
        if (
            isinstance(self.overlap_px, bool)
            or not isinstance(self.overlap_px, int)
            or not 0 <= self.overlap_px < self.tile_px
        ):
            _bad("overlap_px", f"must be an integer in [0, tile_px={self.tile_px}), got {self.overlap_px!r}")
        if not isinstance(self.channel_order, tuple) or not all(isinstance(c, str) and c for c in self.channel_order):
            _bad("channel_order", f"must be a list of channel names, got {self.channel_order!r}")
        if len(self.channel_order) != self.in_channels:
            _bad("channel_order", f"names {len(self.channel_order)} channels but in_channels is {self.in_channels}")
        if len(set(self.channel_order)) != len(self.channel_order):
            _bad("channel_order", f"has duplicate names: {list(self.channel_order)}")
        if (
            isinstance(self.gsd_m, bool)
            or not isinstance(self.gsd_m, float)
            or not math.isfinite(self.gsd_m)
            or self.gsd_m <= 0
        ):
            _bad("gsd_m", f"must be a positive number of metres per pixel, got {self.gsd_m!r}")
        if self.normalisation not in NORMALISATIONS:
            _bad("normalisation", f"unknown normalisation {self.normalisation!r}; known: {', '.join(NORMALISATIONS)}")
        if not isinstance(self.name, str):
            _bad("name", f"must be a string, got {self.name!r}")
        if not isinstance(self.provenance, (str, dict)):
            _bad("provenance", f"must be a string or a JSON object, got {type(self.provenance).__name__}")
        try:
            json.dumps(self.provenance, allow_nan=False)
        except (TypeError, ValueError) as exc:
            _bad("provenance", f"is not JSON-serialisable ({exc})")

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain JSON-compatible types (tuples become lists)."""
        data = asdict(self)
        data["channel_order"] = list(self.channel_order)
        return data

    def to_json(self) -> str:
        """Serialise to a JSON object string (sorted keys, stable across runs)."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any) -> ModelSpec:
        """Build and validate a spec from a mapping; every field is required.

        Raises
        ------
        CheckpointError
            If a field is missing or invalid (the message names it).
        """
        if not isinstance(data, dict):
            raise CheckpointError(
                f"model spec must be a JSON object, got {type(data).__name__}; re-save the checkpoint with satgen"
            )
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            _bad(missing[0], "is missing" + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""))
        unknown = sorted(set(data) - set(names))
        if unknown:
            logger.warning("ignoring unknown model spec fields: %s", ", ".join(unknown))
        values = {n: data[n] for n in names}
        order = values["channel_order"]
        if not isinstance(order, (list, tuple)):
            _bad("channel_order", f"must be a list of channel names, got {order!r}")
        values["channel_order"] = tuple(order)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        """Parse and validate a spec written by :meth:`to_json`.

        Raises
        ------
        CheckpointError
            If ``text`` is not JSON or a field is missing or invalid.
        """
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"model spec is not valid JSON ({exc}); re-save the checkpoint with satgen") from None
        return cls.from_dict(data)


def _bad(field_name: str, problem: str) -> NoReturn:
    raise CheckpointError(
        f"model spec field {field_name!r}: {problem}; fix the spec or re-save the checkpoint with satgen"
    )
