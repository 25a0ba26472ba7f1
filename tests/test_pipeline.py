"""The end-to-end job: finished outputs are kept, unfinished ones removed, and a terminated CLI leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
import shapely

from satgen_geo.errors import CancelledError
from satgen_geo.geotiff import USER_DATA_ATTRIBUTION
from satgen_geo.mask import MaskSource, build_mask
from satgen_geo.model.loaded import load_model
from satgen_geo.pipeline import generate
from tests.conftest import ROOT, SAMPLE_AOI, SAMPLE_PBF


def test_cancel_during_render_keeps_the_finished_mask(tmp_path: Path, tiny_checkpoint: Path) -> None:
    stages: list[str] = []

    def cancel() -> bool:
        return "render" in stages

    with pytest.raises(CancelledError):
        generate(
            tmp_path / "img.tif", MaskSource(osm=SAMPLE_PBF, aoi=SAMPLE_AOI), load_model(tiny_checkpoint, "cpu"),
            mask_output=tmp_path / "mask.tif", progress=lambda d, t, s: stages.append(s), cancel=cancel,
        )
    assert "rasterize" in stages and [p.name for p in tmp_path.iterdir()] == ["mask.tif"]
    with rasterio.open(tmp_path / "mask.tif") as src:  # complete and readable, not a partial file
        assert src.count == 2 and src.read().any()


def test_features_stage_is_reported_and_cancellable_before_drawing(tmp_path: Path) -> None:
    ticks: list[tuple[int, int, str]] = []
    with pytest.raises(CancelledError):
        build_mask(
            tmp_path / "m.tif", MaskSource(osm=SAMPLE_PBF, aoi=SAMPLE_AOI),
            progress=lambda d, t, s: ticks.append((d, t, s)), cancel=lambda: (1, 2, "features") in ticks,
        )
    assert ticks == [(0, 2, "features"), (1, 2, "features")] and list(tmp_path.iterdir()) == []


def test_roads_with_empty_highway_values_are_drawn(tmp_path: Path) -> None:
    roads = gpd.GeoDataFrame(
        {"highway": [None, "", "footway"]},
        geometry=[shapely.LineString([(0, 0), (300, 0)]), shapely.LineString([(0, 100), (300, 100)]),
                  shapely.LineString([(0, 200), (300, 200)])],
        crs=3067,
    )
    roads.to_file(tmp_path / "roads.gpkg")
    assert build_mask(tmp_path / "m.tif", MaskSource(roads=tmp_path / "roads.gpkg")).n_roads == 2


def test_sigterm_leaves_no_partial_files(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "satgen_geo", "generate", "--osm", SAMPLE_PBF, "--gsd", "0.5", "--checkpoint",
         tiny_checkpoint, "--progress", "json", "-o", out / "img.tif"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    for line in proc.stdout:  # wait until rendering runs, then terminate as a cancelled QGIS job does
        if json.loads(line).get("stage") == "render":
            proc.send_signal(signal.SIGTERM)
            break
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert "Terminated" in proc.stderr.read()
    assert list(out.iterdir()) == []


def test_images_from_own_layers_carry_no_osm_attribution(tmp_path: Path, tiny_checkpoint: Path) -> None:
    roads = gpd.GeoDataFrame(geometry=[shapely.LineString([(500_000, 6_710_000), (500_300, 6_710_200)])], crs=3067)
    roads.to_file(tmp_path / "roads.gpkg")
    result = generate(tmp_path / "img.tif", MaskSource(roads=tmp_path / "roads.gpkg"), load_model(tiny_checkpoint, "cpu"),
                      mask_output=tmp_path / "mask.tif")
    for path in (result.mask.path, result.image.path):
        with rasterio.open(path) as ds:
            assert ds.tags()["ATTRIBUTION"] == USER_DATA_ATTRIBUTION, path
    with rasterio.open(result.image.path) as ds:  # and OSM data keeps its attribution (test_mask checks the mask)
        assert "OpenStreetMap" not in ds.tags()["ATTRIBUTION"]
