"""Fixtures for the tile tests: a tiny real model, the bundled OSM extract, tile sources with private caches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mercantile
import pytest

from satgen_geo.engine import RenderConfig
from satgen_geo.mask import MaskSource
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.tiles import TileConfig, TileSource
from tests.conftest import ROOT, torch_threads

SAMPLE_OSM = ROOT / "sample_aoi" / "kotka-suburb.osm.pbf"
#: The engine settings every tile test renders with: exact and independent of the CPU's calibration.
EXACT = RenderConfig(backend="torch", precision="fp32")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny(tiny_checkpoint: Path) -> LoadedModel:
    """The small real generator of ``tiny_checkpoint``, loaded as ``satgen serve`` loads one."""
    return load_model(tiny_checkpoint, "cpu")


@pytest.fixture()
def make_source(tiny: LoadedModel, tmp_path: Path) -> Callable[..., TileSource]:
    """``make_source(**TileConfig changes)``: a tile source of the sample extract with a private cache."""
    def make(source: MaskSource | None = None, **changes: Any) -> TileSource:
        config = TileConfig(**{"chunk_px": 512, "cache_dir": tmp_path / "cache", **changes})
        return TileSource(source or MaskSource(osm=SAMPLE_OSM), tiny, config, EXACT)

    return make


def centre_tile(source: TileSource, zoom: int) -> mercantile.Tile:
    """The tile of ``zoom`` at the centre of the source's area."""
    west, south, east, north = source.bounds
    return mercantile.tile((west + east) / 2, (south + north) / 2, zoom)
