"""What the real ``satgen`` process prints, line by line, and its exit status (README "Command line")."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.conftest import FIXTURES, ROOT, SAMPLE_PBF, run_cli, small_disk

FINLAND = "20.0,59.5,31.6,70.1"


def _lines(text: str) -> list[str]:
    return text.splitlines()


@pytest.mark.parametrize(
    "args",
    [["mask", "--no-such-option"], ["mask", "--osm", SAMPLE_PBF], ["mask", "--gsd", "abc", "-o", "x.tif"],
     ["render", "--bbox", "1,2,3,4"], ["no-such-command"]],
    ids=["unknown-option", "missing-output", "not-a-number", "option-of-another-command", "unknown-command"],
)
def test_usage_errors_are_one_line_with_status_2(args: list) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert _lines(result.stderr) == [result.stderr.strip()] and result.stderr.startswith("Error: "), result.stderr
    assert "Usage:" not in result.stderr and "-h" in result.stderr


def test_error_names_the_flag_and_json_mode_gives_param(tmp_path: Path) -> None:
    result = run_cli("mask", "--osm", SAMPLE_PBF, "--gsd", "0", "-o", tmp_path / "m.tif", "--progress", "json")
    assert result.returncode == 1
    assert _lines(result.stderr) == ["Error: pixel size (GSD, metres) must be a number above 0, got 0.0 (--gsd)"]
    assert [json.loads(line) for line in _lines(result.stdout)] == [
        {"error": "pixel size (GSD, metres) must be a number above 0, got 0.0", "param": "gsd_m"}
    ]
    plain = run_cli("mask", "--osm", SAMPLE_PBF, "--gsd", "0", "-o", tmp_path / "m.tif", "--progress", "none")
    assert plain.stdout == "" and _lines(plain.stderr) == _lines(result.stderr)


@pytest.mark.parametrize(
    ("args", "size"),
    [(["--osm", SAMPLE_PBF, "--bbox", FINLAND], "656,145 × 1,196,565 px"),
     (["--osm", SAMPLE_PBF, "--gsd", "0.01"], "219,703 × 222,921 px"),
     (["--osm", SAMPLE_PBF, "--gsd", "1e-6"], "2,197,016,488 × 2,229,200,857 px")],
    ids=["all-of-finland", "gsd-0.01", "gsd-1e-6"],
)
def test_oversized_masks_stop_at_once_with_one_line(tmp_path: Path, args: list, size: str) -> None:
    started = time.monotonic()
    result = run_cli("mask", *args, "-o", tmp_path / "m.tif", "--progress", "json")
    assert time.monotonic() - started < 60  # imports only: nothing is read, drawn or allocated
    assert result.returncode == 1
    assert _lines(result.stderr) == [result.stderr.strip()], result.stderr
    assert size in result.stderr and "over the limit of 2,000,000,000 px" in result.stderr
    assert result.stderr.rstrip().endswith("raise the pixel limit (--max-pixels)")
    assert json.loads(_lines(result.stdout)[-1])["param"] == "max_pixels"
    assert list(tmp_path.iterdir()) == []


def test_pixel_limit_can_be_raised(tmp_path: Path) -> None:
    small = run_cli("mask", "--osm", FIXTURES / "kotka_clip.osm", "--max-pixels", "1000000", "-o", tmp_path / "m.tif")
    assert small.returncode == 1 and "1,476 × 1,907 px" in small.stderr and "over the limit of 1,000,000 px" in small.stderr
    raised = run_cli("mask", "--osm", FIXTURES / "kotka_clip.osm", "--max-pixels", "3_000_000", "-o", tmp_path / "m.tif",
                     "--progress", "none")
    assert raised.returncode == 0, raised.stderr


@pytest.fixture()
def duplicate_ids(tmp_path: Path) -> Path:
    """A GeoJSON whose two roads share an id: GDAL warns, through pyogrio, with a RuntimeWarning."""
    features = [
        {"type": "Feature", "id": 1, "properties": {"highway": "residential"},
         "geometry": {"type": "LineString", "coordinates": [[26.945, 60.525 + d], [26.95, 60.527 + d]]}}
        for d in (0.0, 0.001)
    ]
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_library_warnings_show_only_with_verbose(tmp_path: Path, duplicate_ids: Path) -> None:
    quiet = run_cli("mask", "--roads", duplicate_ids, "-o", tmp_path / "a.tif", "--progress", "none")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no raw "RuntimeWarning" lines with file paths
    verbose = run_cli("-v", "mask", "--roads", duplicate_ids, "-o", tmp_path / "b.tif", "--progress", "none")
    assert verbose.returncode == 0
    routed = [line for line in _lines(verbose.stderr) if "RuntimeWarning" in line]
    assert routed and routed[0].startswith("WARNING: ") and "Several features with id = 1" in routed[0]


def test_core_warnings_are_json_lines_on_stdout(tmp_path: Path) -> None:
    """An area outside the local file: the mask is empty, and QGIS reads the warning from stdout."""
    args = ["mask", "--osm", SAMPLE_PBF, "--bbox", "25.0,60.0,25.01,60.01", "-o", tmp_path / "m.tif"]
    result = run_cli(*args, "--progress", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in _lines(result.stdout)]
    warnings = [e["warning"] for e in events if "warning" in e]
    assert len(warnings) == 1 and "all zero" in warnings[0] and "kotka-suburb.osm.pbf" in warnings[0]
    assert "WARNING" not in result.stderr and "all zero" not in result.stderr
    plain = run_cli(*args, "--progress", "none")
    assert plain.stdout.startswith("wrote ") and "WARNING: no roads and no buildings" in plain.stderr


def test_truncated_input_is_an_input_error(tmp_path: Path, tiny_checkpoint: Path) -> None:
    mask = tmp_path / "mask.tif"
    data = np.zeros((2, 600, 600), dtype=np.uint8)
    data[:, ::7] = 255
    with rasterio.open(mask, "w", driver="GTiff", width=600, height=600, count=2, dtype="uint8", crs="EPSG:32635",
                       transform=from_origin(500_000, 6_710_000, 1, 1), tiled=True, compress="deflate") as ds:
        ds.write(data)
    mask.write_bytes(mask.read_bytes()[: mask.stat().st_size * 2 // 3])
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("render", mask, "--checkpoint", tiny_checkpoint, "-o", out / "rgb.tif", "--progress", "none")
    assert result.returncode == 1
    assert _lines(result.stderr) == [result.stderr.strip()]
    assert result.stderr.startswith(f"Error: cannot read {mask}") and "truncated" in result.stderr
    assert "cannot write" not in result.stderr and "free space" not in result.stderr
    assert list(out.iterdir()) == []


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[tuple[Path, object]]:
    """A 16 KiB filesystem (tmpfs, as root) or else a 16 KiB file size limit for the child process."""
    with small_disk(tmp_path / "disk", 16384) as limit:
        yield tmp_path / "disk", limit


def test_full_disk_is_one_error_line_and_no_file(full_disk: tuple[Path, object]) -> None:
    folder, limit = full_disk
    result = subprocess.run(
        [sys.executable, "-m", "satgen_geo", "mask", "--osm", FIXTURES / "kotka_clip.osm", "-o", folder / "m.tif",
         "--progress", "none"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, preexec_fn=limit,  # noqa: PLW1509
    )
    assert result.returncode == 1
    assert _lines(result.stderr) == [result.stderr.strip()], result.stderr  # no libtiff lines first
    assert result.stderr.startswith(f"Error: cannot write {folder / 'm.tif'} (")
    assert ("the disk is full" if limit is None else "beyond the end of the 16,384-byte file") in result.stderr
    assert list(folder.iterdir()) == []


def test_early_ctrl_c_is_one_line_and_status_130(tmp_path: Path, tiny_checkpoint: Path) -> None:
    mask = tmp_path / "mask.tif"
    with rasterio.open(mask, "w", driver="GTiff", width=256, height=256, count=2, dtype="uint8", crs="EPSG:32635",
                       transform=from_origin(500_000, 6_710_000, 1, 1)) as ds:
        ds.write(np.zeros((2, 256, 256), dtype=np.uint8))
    proc = subprocess.Popen(
        [sys.executable, "-m", "satgen_geo", "render", mask, "--checkpoint", tiny_checkpoint, "-o", tmp_path / "o.tif"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 120
    while "libtorch" not in maps.read_text() and time.monotonic() < deadline:  # the render command imports torch
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err == "Interrupted; unfinished outputs were removed\n" and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


def test_a_crash_is_still_reported_on_the_real_stderr() -> None:
    code = "from satgen_geo.cli_report import capture_native_stderr\ncapture_native_stderr()\nimport ctypes\nctypes.string_at(0)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode < 0  # killed by the fault
    assert "Fatal Python error: Segmentation fault" in result.stderr
