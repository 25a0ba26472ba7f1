"""``satgen osm extract`` and ``satgen region`` as a user runs them, on the bundled sample area."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.conftest import SAMPLE_AOI, SAMPLE_PBF, run_cli, small_disk


def test_extract_then_region_then_rerun_equals_generate(tmp_path: Path, tiny_checkpoint: Path) -> None:
    store = tmp_path / "store.gpkg"
    extracted = run_cli("osm", "extract", SAMPLE_PBF, "-o", store, "--progress", "none")
    assert extracted.returncode == 0, extracted.stderr
    assert "331 roads, 2193 buildings" in extracted.stdout

    args = ["region", "--store", store, "--aoi", SAMPLE_AOI, "--checkpoint", tiny_checkpoint, "--seed", "5",
            "--workers", "0", "--chunk-px", "512", "-o", tmp_path / "out"]
    first = run_cli(*args, "--progress", "json")
    assert first.returncode == 0, first.stderr
    ticks = [json.loads(line) for line in first.stdout.splitlines()]
    assert ticks[-1]["stage"] == "region" and ticks[-1]["done"] == ticks[-1]["total"] == 9
    assert "9 rendered, 0 unchanged" in first.stderr

    again = run_cli(*args, "--progress", "none")
    assert again.returncode == 0 and "0 rendered, 9 unchanged" in again.stdout

    whole = run_cli("generate", "--osm", SAMPLE_PBF, "--aoi", SAMPLE_AOI, "--checkpoint", tiny_checkpoint, "--seed", "5",
                    "-o", tmp_path / "whole.tif", "--progress", "none")
    assert whole.returncode == 0, whole.stderr
    with rasterio.open(tmp_path / "out" / "mosaic.vrt") as mosaic, rasterio.open(tmp_path / "whole.tif") as single:
        assert mosaic.crs == single.crs and mosaic.transform == single.transform
        assert np.array_equal(mosaic.read(), single.read())


def test_region_refuses_another_jobs_folder_with_one_line(tmp_path: Path, tiny_checkpoint: Path) -> None:
    base = ["region", "--osm", SAMPLE_PBF, "--aoi", SAMPLE_AOI, "--checkpoint", tiny_checkpoint, "--workers", "0",
            "--chunk-px", "1024", "--deterministic", "-o", tmp_path / "out", "--progress", "none"]
    assert run_cli(*base).returncode == 0
    other = run_cli(*base, "--gsd", "2")
    assert other.returncode == 1 and other.stderr.count("\n") == 1
    assert other.stderr.startswith("Error: ") and "another region job" in other.stderr


def test_full_disk_is_one_error_line_and_no_broken_chunk_counts_as_done(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with small_disk(tmp_path / "disk", 1_500_000) as limit:
        if limit is not None:
            pytest.skip("needs root to mount a small tmpfs (chunk files are smaller than any useful file size limit)")
        out = tmp_path / "disk" / "out"
        result = run_cli("region", "--osm", SAMPLE_PBF, "--aoi", SAMPLE_AOI, "--checkpoint", tiny_checkpoint,
                         "--workers", "0", "--chunk-px", "512", "-o", out, "--progress", "none")
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
        manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {"chunks": []}
        done = [c for c in manifest["chunks"] if c["status"] == "done"]
        assert len(done) < 9  # the disk filled up before the job finished
        for chunk in done:  # every chunk counted as done is whole and is what the manifest says
            assert hashlib.sha256((out / chunk["path"]).read_bytes()).hexdigest() == chunk["checksum"]
