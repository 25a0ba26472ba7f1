"""The region manifest: round trip, job identity, input hashes, refusal to mix jobs, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from affine import Affine
from pyproj import CRS

from satgen_geo.errors import ConfigError, InputFileError
from satgen_geo.grid import Grid
from satgen_geo.region.chunks import ChunkPlan
from satgen_geo.region.manifest import (
    DONE,
    EMPTY,
    FORMAT,
    MANIFEST_NAME,
    ChunkRecord,
    Manifest,
    check_same_job,
    input_hash,
    job_identity,
    job_key,
    load_manifest,
    save_manifest,
)

GRID = Grid(CRS.from_epsg(32635), Affine(1.0, 0.0, 496_000.0, 0.0, -1.0, 6_711_000.0), 1300, 700)
PLAN = ChunkPlan(700, 1300, 512)


def _job(seed: int = 0, grid: Grid = GRID, plan: ChunkPlan = PLAN) -> dict:
    return job_identity(grid, plan, "ab" * 32, {"seed": seed, "batch_size": 8, "roads": {"classes": ["primary"]}})


def test_round_trip_keeps_every_record(tmp_path: Path) -> None:
    chunk0, chunk1 = PLAN.chunk(0, 0), PLAN.chunk(1, 2)
    manifest = Manifest(_job()).with_record(
        ChunkRecord.of(chunk0, GRID, DONE, path="chunks/r0000_c0000.tif", checksum="c" * 64, input_hash="i" * 64)
    ).with_record(ChunkRecord.of(chunk1, GRID, EMPTY))
    path = save_manifest(tmp_path, manifest)
    assert path == tmp_path / MANIFEST_NAME and not list(tmp_path.glob(".*"))  # no temporary file left
    loaded = load_manifest(tmp_path)
    assert loaded == manifest
    record = loaded.chunks["r0001_c0002"]
    assert record.box == (1024, 512, 276, 188) and record.status == EMPTY and record.checksum is None
    assert record.bounds == (497_024.0, 6_710_300.0, 497_300.0, 6_710_488.0)
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and [c["id"] for c in doc["chunks"]] == ["r0000_c0000", "r0001_c0002"]
    assert doc["job"]["grid"]["width"] == 1300 and "PROJCRS" in doc["job"]["grid"]["crs"]


def test_no_manifest_and_a_corrupt_one(tmp_path: Path) -> None:
    assert load_manifest(tmp_path) is None
    (tmp_path / MANIFEST_NAME).write_text('{"format": "satgen-region/1", "job": {}, "chunks": [{"id": 1')
    with pytest.raises(InputFileError, match="cannot read the region manifest .* delete it") as err:
        load_manifest(tmp_path)
    assert err.value.param == "outdir"
    (tmp_path / MANIFEST_NAME).write_text('{"format": "something-else"}')
    with pytest.raises(InputFileError, match="format 'something-else'"):
        load_manifest(tmp_path)


def test_the_same_job_passes_and_another_is_refused_with_what_differs(tmp_path: Path) -> None:
    existing = Manifest(_job())
    check_same_job(existing, _job(), tmp_path)  # identical identity: accepted
    check_same_job(Manifest(json.loads(json.dumps(_job()))), _job(), tmp_path)  # as read back from JSON
    with pytest.raises(ConfigError, match=r"different seed \(0 there, 3 here\)") as err:
        check_same_job(existing, _job(seed=3), tmp_path)
    assert err.value.param == "outdir" and str(tmp_path) in str(err.value)
    moved = Grid(GRID.crs, GRID.transform * Affine.translation(1, 0), GRID.width, GRID.height)
    with pytest.raises(ConfigError, match="different grid"):
        check_same_job(existing, _job(grid=moved), tmp_path)
    with pytest.raises(ConfigError, match="different chunks"):
        check_same_job(existing, _job(plan=ChunkPlan(700, 1300, 256)), tmp_path)


def test_the_input_hash_changes_with_every_input() -> None:
    chunk = PLAN.chunk(0, 1)
    base = input_hash(job_key(_job()), chunk, [b"roads", b"aoi"])
    assert base == input_hash(job_key(_job()), chunk, [b"roads", b"aoi"])
    assert len({
        base,
        input_hash(job_key(_job(seed=1)), chunk, [b"roads", b"aoi"]),
        input_hash(job_key(_job()), PLAN.chunk(1, 1), [b"roads", b"aoi"]),
        input_hash(job_key(_job()), chunk, [b"roads", b"aoj"]),
        input_hash(job_key(_job()), chunk, [b"road", b"saoi"]),  # parts are length-delimited
    }) == 5
