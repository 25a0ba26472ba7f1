"""satgen-geo: OpenStreetMap roads and buildings → georeferenced synthetic aerial imagery.

The public API::

    from satgen_geo import MaskSource, build_mask, load_model, render, generate
"""

__version__ = "0.1.0"

from satgen_geo.engine import RenderConfig, RenderResult, render  # noqa: E402
from satgen_geo.mask import MaskConfig, MaskResult, MaskSource, build_mask  # noqa: E402
from satgen_geo.model.loaded import LoadedModel, load_model  # noqa: E402
from satgen_geo.osm.fetch import OverpassConfig  # noqa: E402
from satgen_geo.osm.roads import RoadConfig  # noqa: E402
from satgen_geo.pipeline import GenerateResult, generate  # noqa: E402

__all__ = [
    "GenerateResult", "LoadedModel", "MaskConfig", "MaskResult", "MaskSource", "OverpassConfig",
    "RenderConfig", "RenderResult", "RoadConfig", "build_mask", "generate", "load_model", "render",
]
