"""Fixtures for the region tests: the sample extract as a store, a tiny model, a reference render, a cluster.

The model is the tiny random ``UNetGenerator(features=8)`` of ``tiny_checkpoint``, loaded with
``load_model`` (workers load the same file). The region is the whole sample extract at 2 m
(1044 × 1004 px) under a triangular AOI that leaves the top-right 512 px chunk empty; the
reference is ``satgen mask`` + ``render`` of the whole area in this process.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

if any(importlib.util.find_spec(name) is None for name in ("osmium", "distributed")):
    collect_ignore_glob = ["test_*.py"]  # the region extra is not installed
else:
    import geopandas as gpd
    import numpy as np
    import rasterio
    import shapely
    from distributed import Client, LocalCluster

    from satgen_geo.engine import RenderConfig, render
    from satgen_geo.mask import MaskConfig, MaskSource, build_mask
    from satgen_geo.model.loaded import LoadedModel, load_model
    from satgen_geo.osm.extract import extract_store
    from tests.conftest import SAMPLE_PBF, torch_threads

#: The triangle's corners (EPSG:4326): the north-east of the extract stays outside.
TRIANGLE = [(26.931, 60.521), (26.969, 60.521), (26.931, 60.539)]
GSD_M = 2.0
SEED = 7


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread here, as in each worker of a 2-worker cluster on 2 cores."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def region_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("region")


@pytest.fixture(scope="session")
def store(region_dir: Path) -> Path:
    """The sample extract as an OSM store."""
    return extract_store(SAMPLE_PBF, region_dir / "kotka.gpkg").path


@pytest.fixture(scope="session")
def triangle(region_dir: Path) -> Path:
    path = region_dir / "triangle.geojson"
    gpd.GeoDataFrame(geometry=[shapely.Polygon(TRIANGLE)], crs="EPSG:4326").to_file(path)
    return path


@pytest.fixture(scope="session")
def tiny(tiny_checkpoint: Path) -> LoadedModel:
    """The tiny generator; each Dask worker loads the same file."""
    return load_model(tiny_checkpoint, "cpu")


@pytest.fixture(scope="session")
def source(store: Path, triangle: Path) -> MaskSource:
    return MaskSource(osm=store, aoi=triangle)


@pytest.fixture(scope="session")
def mask_config() -> MaskConfig:
    return MaskConfig(gsd_m=GSD_M)


@pytest.fixture(scope="session")
def render_config() -> RenderConfig:
    return RenderConfig(seed=SEED)


@pytest.fixture(scope="session")
def reference(region_dir: Path, source: MaskSource, mask_config: MaskConfig, render_config: RenderConfig,
              tiny: LoadedModel) -> dict[str, np.ndarray]:
    """A single-process render of the whole area: RGB, its validity mask, and its georeferencing."""
    mask = build_mask(region_dir / "whole-mask.tif", source, mask_config).path
    out = render(mask, region_dir / "whole.tif", tiny, render_config).path
    with rasterio.open(out) as src:
        return {"rgb": src.read(), "valid": src.dataset_mask(), "transform": src.transform, "crs": src.crs,
                "tags": src.tags()}


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """One 2-process local Dask cluster shared by the tests that run on Dask."""
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local


@pytest.fixture()
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as connected:
        yield connected
