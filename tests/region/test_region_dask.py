"""Region jobs on a real local Dask cluster: bit-identical to one process, fault tolerant, resumable, incremental.

Every job renders the sample extract at 2 m (1044 × 1004 px) in 512 or 384 px chunks with a
tiny network under a triangular AOI, and its mosaic is compared pixel for pixel with a
single-process ``render`` of the whole mask (``reference`` in ``conftest.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from distributed import Client, LocalCluster

from satgen_geo.engine import RenderConfig, render
from satgen_geo.errors import CancelledError
from satgen_geo.mask import MaskConfig, MaskSource, build_mask
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.region import RegionConfig, RegionResult, run_region
from satgen_geo.region.chunks import box_bounds
from satgen_geo.region.job import CHUNKS_DIR, WORK_DIR, chunk_path
from satgen_geo.region.manifest import DONE, EMPTY, MANIFEST_NAME

PROVENANCE = ("CONTENT", "MODEL", "MODEL_SHA256", "SEED", "SOURCE", "ATTRIBUTION", "SOFTWARE")


def _on(cluster: LocalCluster, chunk_px: int = 512, **kw: object) -> RegionConfig:
    return RegionConfig(chunk_px=chunk_px, scheduler=cluster.scheduler_address, dashboard=False, **kw)


def _assert_equals_reference(result: RegionResult, reference: dict, mosaic: Path | None = None) -> None:
    """Every done chunk equals the same pixels of the whole render; empty chunks are invalid there."""
    with rasterio.open(mosaic or result.mosaic) as src:
        rgb, valid = src.read(), src.dataset_mask()
        assert src.crs == reference["crs"] and src.transform == reference["transform"]
        assert {k: src.tags()[k] for k in PROVENANCE} == {k: reference["tags"][k] for k in PROVENANCE}
    statuses = json.loads((result.outdir / MANIFEST_NAME).read_text())["chunks"]
    assert len(statuses) == len(result.plan)
    for chunk, record in zip(result.plan, statuses, strict=True):
        b = chunk.box
        rows, cols = slice(b.row_off, b.row_off + b.height), slice(b.col_off, b.col_off + b.width)
        assert record["id"] == chunk.id
        if record["status"] == DONE:
            np.testing.assert_array_equal(rgb[:, rows, cols], reference["rgb"][:, rows, cols], err_msg=chunk.id)
            np.testing.assert_array_equal(valid[rows, cols], reference["valid"][rows, cols], err_msg=chunk.id)
        else:
            assert record["status"] == EMPTY and not reference["valid"][rows, cols].any()
            assert not valid[rows, cols].any() and not chunk_path(result.outdir, chunk).exists()
    assert not (result.outdir / WORK_DIR).exists()
    assert not list((result.outdir / CHUNKS_DIR).glob(".*"))  # no temporary chunk files left


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, source: MaskSource, mask_config: MaskConfig,
              render_config: RenderConfig, tiny: LoadedModel, cluster: LocalCluster) -> tuple[RegionResult, list]:
    """A complete 512 px job on the shared cluster, with its progress calls."""
    calls: list = []
    result = run_region(source, tmp_path_factory.mktemp("first"), tiny, mask_config, render_config,
                        _on(cluster, cog=True), progress=lambda *a: calls.append(a))
    return result, calls


def test_region_on_dask_equals_one_process(first_run: tuple[RegionResult, list], reference: dict) -> None:
    result, calls = first_run
    assert (result.plan.rows, result.plan.cols) == (2, 3)  # edge chunks 20 px wide and 492 px tall
    assert (result.rendered, result.reused, result.empty) == (5, 0, 1)
    _assert_equals_reference(result, reference)
    _assert_equals_reference(result, reference, mosaic=result.cog)  # the COG holds the same pixels
    with rasterio.open(result.cog) as cog:
        assert cog.overviews(1) and cog.profile["tiled"]
    assert calls[-1] == (6, 6, "region") and {c[2] for c in calls} == {"region"}
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_a_killed_worker_is_replaced_and_the_job_completes(
    tmp_path: Path, source: MaskSource, mask_config: MaskConfig, render_config: RenderConfig,
    tiny: LoadedModel, cluster: LocalCluster, client: Client, reference: dict,
) -> None:
    killed: list[tuple[str, list]] = []

    def kill_a_busy_worker(done: int, total: int, stage: str) -> None:
        if killed or done < 2:  # 9 chunks, 1 empty: kill after the first rendered chunk
            return
        busy = {address: keys for address, keys in client.processing().items() if keys}
        if not busy:  # between two tasks: try again when the next chunk finishes
            return
        address = next(iter(busy))
        os.kill(client.run(os.getpid)[address], signal.SIGKILL)
        killed.append((address, busy[address]))

    result = run_region(source, tmp_path / "out", tiny, mask_config, render_config, _on(cluster, chunk_px=384),
                        progress=kill_a_busy_worker)
    assert killed and killed[0][1], "a worker with a chunk in progress was killed"
    assert (result.plan.rows, result.plan.cols, result.empty, result.rendered) == (3, 3, 1, 8)
    _assert_equals_reference(result, reference)


def test_an_interrupted_job_resumes_and_broken_chunks_are_redone(
    tmp_path: Path, source: MaskSource, mask_config: MaskConfig, render_config: RenderConfig,
    tiny: LoadedModel, cluster: LocalCluster, reference: dict,
) -> None:
    out, dashboards, done = tmp_path / "out", [], []
    local = RegionConfig(chunk_px=512, workers=1, dashboard=True)  # a LocalCluster of its own
    with pytest.raises(CancelledError):
        run_region(source, out, tiny, mask_config, render_config, local, progress=lambda d, t, s: done.append(d),
                   cancel=lambda: len(done) >= 3, on_cluster=dashboards.append)
    assert dashboards and dashboards[0].startswith("http://")
    records = json.loads((out / MANIFEST_NAME).read_text())["chunks"]
    kept = {out / r["path"]: (out / r["path"]).stat().st_mtime_ns for r in records if r["status"] == DONE}
    assert 2 <= len(kept) < 5  # a chunk finished after the cancel has a file but no record: it is redone

    resumed = run_region(source, out, tiny, mask_config, render_config, _on(cluster))
    assert (resumed.reused, resumed.rendered) == (len(kept), 5 - len(kept))
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    _assert_equals_reference(resumed, reference)

    files = sorted((out / CHUNKS_DIR).glob("*.tif"))
    files[0].unlink()
    with open(files[1], "r+b") as fh:  # flip one byte inside the file
        fh.seek(os.path.getsize(files[1]) // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    untouched = {p: p.stat().st_mtime_ns for p in files[2:]}
    repaired = run_region(source, out, tiny, mask_config, render_config, RegionConfig(chunk_px=512, workers=0))
    assert (repaired.rendered, repaired.reused) == (2, 3)
    assert all(p.stat().st_mtime_ns == t for p, t in untouched.items())
    _assert_equals_reference(repaired, reference)


def test_a_changed_building_recomputes_exactly_the_chunks_that_see_it(
    tmp_path: Path, first_run: tuple[RegionResult, list], store: Path, triangle: Path, mask_config: MaskConfig,
    render_config: RenderConfig, tiny: LoadedModel, cluster: LocalCluster,
) -> None:
    first, _ = first_run
    out = tmp_path / "out"
    shutil.copytree(first.outdir, out)  # copy2: the copies keep their modification times
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / CHUNKS_DIR).glob("*.tif")}
    grid, plan = first.grid, first.plan
    # a 20 × 20 m building in chunk r0000_c0001, 48 px from its left edge: inside r0000_c0000's halo too
    left, _, _, top = box_bounds(grid, plan.chunk(0, 1).box)
    house = shapely.box(left + 96, top - 420, left + 116, top - 400)
    new_store = tmp_path / "new.gpkg"
    shutil.copy(store, new_store)
    added = gpd.GeoDataFrame({"osm_id": [1], "osm_type": ["way"], "building": ["yes"]},
                             geometry=[shapely.MultiPolygon([house])], crs=grid.crs).to_crs("EPSG:4326")
    pyogrio.write_dataframe(added, new_store, layer="buildings", append=True)
    seeing = {c.id for c in plan if shapely.intersects(shapely.box(*box_bounds(grid, c.halo)), house)}
    assert seeing == {"r0000_c0000", "r0000_c0001"}

    source = MaskSource(osm=new_store, aoi=triangle)
    result = run_region(source, out, tiny, mask_config, render_config, _on(cluster))
    assert (result.rendered, result.reused) == (2, 3)
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / CHUNKS_DIR).glob("*.tif")}
    assert {name for name in before if after[name] != before[name]} == {f"{c}.tif" for c in seeing}
    whole = build_mask(tmp_path / "mask.tif", source, mask_config).path
    with rasterio.open(render(whole, tmp_path / "whole.tif", tiny, render_config).path) as src:
        new_reference = {"rgb": src.read(), "valid": src.dataset_mask(), "crs": src.crs, "transform": src.transform,
                         "tags": src.tags()}
    _assert_equals_reference(result, new_reference)
