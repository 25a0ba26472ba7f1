"""satgen-geo: OpenStreetMap roads and buildings → georeferenced synthetic aerial imagery.

The public API (imported lazily, so ``satgen mask`` does not pay for importing torch)::

    from satgen_geo import MaskSource, build_mask, load_model, render, generate, run_region, extract_store
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RenderConfig": "satgen_geo.engine", "RenderResult": "satgen_geo.engine", "render": "satgen_geo.engine",
    "MaskConfig": "satgen_geo.mask", "MaskResult": "satgen_geo.mask", "MaskSource": "satgen_geo.mask",
    "build_mask": "satgen_geo.mask", "LoadedModel": "satgen_geo.model.loaded", "load_model": "satgen_geo.model.loaded",
    "OverpassConfig": "satgen_geo.osm.fetch", "RoadConfig": "satgen_geo.osm.roads",
    "GenerateResult": "satgen_geo.pipeline", "generate": "satgen_geo.pipeline",
    "RegionConfig": "satgen_geo.region", "RegionResult": "satgen_geo.region", "run_region": "satgen_geo.region",
    "extract_store": "satgen_geo.osm.extract",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'satgen_geo' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
