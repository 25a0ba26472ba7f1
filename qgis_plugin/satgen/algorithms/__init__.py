"""The SatGen Processing algorithms, one per module."""

from .generate_from_mask import GenerateFromMask
from .generate_from_osm import GenerateFromOsm
from .generate_from_vector import GenerateFromVector
from .rasterize_mask import RasterizeMask

ALGORITHMS = (GenerateFromOsm, GenerateFromVector, GenerateFromMask, RasterizeMask)

__all__ = ["ALGORITHMS", "GenerateFromMask", "GenerateFromOsm", "GenerateFromVector", "RasterizeMask"]
