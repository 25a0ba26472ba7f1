"""The region job without a cluster: halo masks equal the whole mask, and bad input fails before work."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from satgen_geo.engine import RenderConfig
from satgen_geo.errors import PARAMS, AOIError, ConfigError, LimitError, OutputError
from satgen_geo.grid import WGS84
from satgen_geo.mask import MaskConfig, MaskSource, build_mask, mask_grid
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.osm.files import read_aoi
from satgen_geo.osm.roads import RoadConfig, road_widths_m
from satgen_geo.region import RegionConfig, run_region
from satgen_geo.region.chunks import plan_chunks, touches_area
from satgen_geo.region.job import ROAD_REACH_M, ChunkTask, _write_halo_mask, clip_area
from satgen_geo.region.manifest import MANIFEST_NAME
from tests.conftest import ROOT


@pytest.mark.parametrize("chunk_px", [384, 512])
def test_every_halo_mask_equals_the_same_pixels_of_the_whole_mask(
    tmp_path: Path, source: MaskSource, mask_config: MaskConfig, triangle: Path, chunk_px: int
) -> None:
    whole = build_mask(tmp_path / "whole.tif", source, mask_config).path
    with rasterio.open(whole) as src:
        bands, valid = src.read(), src.dataset_mask()
    aoi = read_aoi(triangle)
    grid, area = mask_grid(aoi, mask_config)
    for chunk in plan_chunks(grid, chunk_px):
        b = chunk.box
        if not touches_area(grid, b, area.geometry):  # an empty chunk: no pixel of it is in the AOI
            assert not valid[b.row_off : b.row_off + b.height, b.col_off : b.col_off + b.width].any()
            continue
        task = ChunkTask(chunk, grid, clip_area(area.geometry, grid, chunk.halo), aoi.to_crs(WGS84).bounds, source,
                         mask_config, RenderConfig(), tmp_path, "key")
        _write_halo_mask(task, tmp_path / f"{chunk.id}.tif")
        h = chunk.halo
        rows, cols = slice(h.row_off, h.row_off + h.height), slice(h.col_off, h.col_off + h.width)
        with rasterio.open(tmp_path / f"{chunk.id}.tif") as halo:
            np.testing.assert_array_equal(halo.read(), bands[:, rows, cols], err_msg=chunk.id)
            np.testing.assert_array_equal(halo.dataset_mask(), valid[rows, cols], err_msg=chunk.id)


def test_road_reach_covers_the_widest_road_drawn() -> None:
    widest = road_widths_m(pd.Series(["motorway"]), pd.Series(["1000"]), pd.Series([None]), RoadConfig())
    assert widest[0] / 2 <= ROAD_REACH_M


def test_a_scheduler_that_does_not_answer_fails_within_seconds(
    tmp_path: Path, source: MaskSource, mask_config: MaskConfig, tiny: LoadedModel
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nobody listens there
    config = RegionConfig(chunk_px=512, scheduler=f"tcp://127.0.0.1:{port}", connect_timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"no Dask scheduler answers at tcp://127.0.0.1:{port} within 2 s") as err:
        run_region(source, tmp_path / "out", tiny, mask_config, RenderConfig(), config)
    assert err.value.param == "scheduler"
    assert time.monotonic() - started < 15
    assert not list((tmp_path / "out" / "chunks").glob("*.tif"))


def test_an_outdir_of_another_job_is_refused_before_any_work(
    tmp_path: Path, source: MaskSource, mask_config: MaskConfig, tiny: LoadedModel
) -> None:
    out = tmp_path / "out"
    tiny_config = RegionConfig(chunk_px=512, workers=0)
    small = MaskSource(osm=source.osm, bbox=(26.9405, 60.5255, 26.9445, 60.5275))  # one 512 px chunk at 2 m
    first = run_region(small, out, tiny, mask_config, RenderConfig(seed=1), tiny_config)
    assert first.rendered == 1
    manifest = (out / MANIFEST_NAME).read_bytes()
    with pytest.raises(ConfigError, match=r"holds another region job \(different seed \(1 there, 2 here\)") as err:
        run_region(small, out, tiny, mask_config, RenderConfig(seed=2), tiny_config)
    assert err.value.param == "outdir"
    with pytest.raises(ConfigError, match="different chunks"):
        run_region(small, out, tiny, mask_config, RenderConfig(seed=1), RegionConfig(chunk_px=256, workers=0))
    with pytest.raises(ConfigError, match="different grid"):
        run_region(MaskSource(osm=source.osm, bbox=(26.9405, 60.5255, 26.9446, 60.5275)), out, tiny, mask_config,
                   RenderConfig(seed=1), tiny_config)
    assert (out / MANIFEST_NAME).read_bytes() == manifest
    again = run_region(small, out, tiny, mask_config, RenderConfig(seed=1), tiny_config)
    assert (again.rendered, again.reused) == (0, 1)
    shutil.rmtree(out)


def test_bad_outdir_area_and_limits_fail_before_work(
    tmp_path: Path, source: MaskSource, mask_config: MaskConfig, tiny: LoadedModel
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot create the folder") as err:
        run_region(source, blocker / "out", tiny, mask_config)
    assert err.value.param == "outdir"
    with pytest.raises(ConfigError, match="a region job reads local data") as err:
        run_region(MaskSource(bbox=(26.94, 60.52, 26.95, 60.53)), tmp_path / "a", tiny, mask_config)
    assert err.value.param == "store"
    with pytest.raises(AOIError, match="needs its area"):
        run_region(MaskSource(roads=source.osm), tmp_path / "b", tiny, mask_config)
    with pytest.raises(LimitError, match="over the limit of 1,000,000 px") as err:
        run_region(source, tmp_path / "c", tiny, mask_config, config=RegionConfig(max_pixels=1_000_000))
    assert err.value.param == "max_pixels"
    with pytest.raises(ConfigError, match="must look like tcp://HOST:PORT"):
        RegionConfig(scheduler="localhost")
    with pytest.raises(ConfigError, match="local worker processes"):
        RegionConfig(workers=-1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    assert {"outdir", "store", "max_pixels", "scheduler", "cluster_workers", "chunk_px"} <= set(PARAMS)


def test_importing_the_package_and_the_region_core_does_not_import_dask_or_osmium() -> None:
    code = (
        "import sys, satgen_geo, satgen_geo.region, satgen_geo.osm.store\n"
        "print(sorted(m for m in ('dask', 'distributed', 'osmium') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
