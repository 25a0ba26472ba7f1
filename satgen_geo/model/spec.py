"""A JSON-serialisable description of a generator checkpoint: architecture and how to feed it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NoReturn

from satgen_geo._validate import check_choice, check_int, check_number
from satgen_geo.errors import CheckpointError, ConfigError
from satgen_geo.model.generator import MAX_CHANNELS, MAX_FEATURES, TILE_MULTIPLE
from satgen_geo.tiling import max_overlap

logger = logging.getLogger(__name__)

__all__ = ["ARCHITECTURE", "MAX_GSD_M", "MAX_SPEC_BYTES", "MAX_TILE_PX", "MIN_GSD_M", "NORMALISATIONS", "ModelSpec"]

#: The only architecture this package implements (:class:`~satgen_geo.model.UNetGenerator`).
ARCHITECTURE = "satgen-unet-v1"
#: Known input/output scalings. ``"x/127.5-1"``: masks and images as 0..255 mapped to [-1, 1].
NORMALISATIONS = ("x/127.5-1",)
#: Largest inference window (pixels per side) a spec may ask for.
MAX_TILE_PX = 4096
#: Accepted training pixel sizes, metres per pixel.
MIN_GSD_M, MAX_GSD_M = 0.01, 1000.0
#: Longest accepted spec JSON: a real one is well under a kilobyte plus its provenance.
MAX_SPEC_BYTES = 1 << 20
_FIX = "fix the spec or re-save the checkpoint with satgen"


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint is and how to use it.

    Parameters
    ----------
    architecture
        Network layout; only ``"satgen-unet-v1"`` is known.
    in_channels, out_channels, features
        Generator shape (see :class:`~satgen_geo.model.UNetGenerator`): channels 1 to
        16, features 1 to 512.
    channel_order
        Meaning of each input channel, in order; ``len == in_channels``.
    gsd_m
        Ground sampling distance the model was trained at, 0.01 to 1000 metres per pixel.
    tile_px
        Inference window size in pixels: a multiple of 256 from 256 to 4096.
    overlap_px
        Overlap between neighbouring windows, ``0 <= overlap_px <= tile_px * 7 // 8``.
    normalisation
        How masks/images map to the network's value range.
    name
        Short human-readable name.
    provenance
        Free text or a JSON-compatible dict (source, licence, training notes).

    Every value is bounded, so a checkpoint's spec cannot make satgen allocate more than
    the checkpoint's own tensors need.

    Raises
    ------
    CheckpointError
        Naming the first invalid field and its accepted range (``param="checkpoint"``).
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
        with _as_checkpoint_error():
            self._validate()

    def _validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        check_choice(self.architecture, "checkpoint", _what("architecture"), (ARCHITECTURE,))
        check_int(self.in_channels, "checkpoint", _what("in_channels"), maximum=MAX_CHANNELS)
        check_int(self.out_channels, "checkpoint", _what("out_channels"), maximum=MAX_CHANNELS)
        check_int(self.features, "checkpoint", _what("features"), maximum=MAX_FEATURES)
        check_int(
            self.tile_px, "checkpoint", _what("tile_px"), minimum=TILE_MULTIPLE, maximum=MAX_TILE_PX, multiple_of=TILE_MULTIPLE
        )
        check_int(self.overlap_px, "checkpoint", _what("overlap_px"), minimum=0, maximum=max_overlap(self.tile_px))
        order = self.channel_order
        if not isinstance(order, tuple) or not all(isinstance(c, str) and c for c in order):
            _bad("channel_order", f"must be a list of channel names, got {order!r}")
        if len(order) != self.in_channels:
            _bad("channel_order", f"names {len(order)} channels but in_channels is {self.in_channels}")
        if len(set(order)) != len(order):
            _bad("channel_order", f"has duplicate names: {list(order)}")
        gsd = check_number(self.gsd_m, "checkpoint", _what("gsd_m"), minimum=MIN_GSD_M, maximum=MAX_GSD_M)
        object.__setattr__(self, "gsd_m", gsd)
        check_choice(self.normalisation, "checkpoint", _what("normalisation"), NORMALISATIONS)
        if not isinstance(self.name, str):
            _bad("name", f"must be a string, got {self.name!r}")
        if not isinstance(self.provenance, (str, dict)):
            _bad("provenance", f"must be a string or a JSON object, got {type(self.provenance).__name__}")
        try:
            json.dumps(self.provenance, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
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
                f"model spec must be a JSON object, got {type(data).__name__}; re-save the checkpoint with satgen",
                param="checkpoint",
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
            If ``text`` is over :data:`MAX_SPEC_BYTES`, not JSON, or a field is missing or invalid.
        """
        if len(text) > MAX_SPEC_BYTES:
            raise CheckpointError(
                f"model spec is {len(text):,} bytes, over the limit of {MAX_SPEC_BYTES:,}; {_FIX}", param="checkpoint"
            )
        try:
            data = json.loads(text)
        except (TypeError, ValueError, RecursionError) as exc:
            raise CheckpointError(
                f"model spec is not valid JSON ({exc}); re-save the checkpoint with satgen", param="checkpoint"
            ) from None
        return cls.from_dict(data)


def _what(field_name: str) -> str:
    return f"model spec field {field_name!r}"


def _bad(field_name: str, problem: str) -> NoReturn:
    raise CheckpointError(f"{_what(field_name)}: {problem}; {_FIX}", param="checkpoint")


@contextmanager
def _as_checkpoint_error() -> Iterator[None]:
    """Report the shared validation helpers' :class:`ConfigError` as a :class:`CheckpointError`."""
    try:
        yield
    except ConfigError as exc:
        raise CheckpointError(f"{exc}; {_FIX}", param="checkpoint") from None
