"""Region scale: an area of any size rendered as chunks on Dask distributed, identical to one process.

``run_region`` is the job (see :mod:`satgen_geo.region.run`); the chunk plan, the manifest,
the mosaic and the Dask executor live in their own modules. Importing this package does not
import Dask: only :mod:`satgen_geo.region.dask` does, when a job runs on a cluster.
"""

from satgen_geo.region.chunks import Chunk, ChunkPlan, PixelBox, plan_chunks
from satgen_geo.region.run import RegionConfig, RegionResult, run_region

__all__ = ["Chunk", "ChunkPlan", "PixelBox", "RegionConfig", "RegionResult", "plan_chunks", "run_region"]
