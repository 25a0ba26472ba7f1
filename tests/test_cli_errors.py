"""Bad input through the real CLI: one-line error, exit status != 0, no output file left."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from satgen_geo.errors import CancelledError
from satgen_geo.mask import MaskSource, build_mask
from tests.conftest import SAMPLE_PBF, run_cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_clean_failure(result, out_dir: Path, fragment: str) -> None:  # noqa: ANN001
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.stderr
    assert fragment in error_lines[0], error_lines[0]
    assert not [p for p in out_dir.iterdir() if p.suffix in (".tif", ".partial")], list(out_dir.iterdir())


@pytest.fixture()
def nocrs_shapefile(tmp_path: Path) -> Path:
    path = tmp_path / "drawn.shp"
    with warnings.catch_warnings():  # writing a file without a CRS is the point here
        warnings.simplefilter("ignore", UserWarning)
        gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (100, 0)])]).to_file(path)
    assert not path.with_suffix(".prj").exists()
    return path


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--bbox", "26.97,60.52,26.93,60.54"], "swapped"),
        (["--bbox", "60.52,26.93,60.54,95"], "-90..90"),
        (["--bbox", "26.93,60.52,26.93,60.54"], "zero area"),
        (["--bbox", "20,55,28,62", "--overpass-url", "http://127.0.0.1:{port}/api"], "--max-area-km2"),
        (["--bbox", "26.94,60.52,26.95,60.53", "--overpass-url", "http://127.0.0.1:{port}/api"], "--osm FILE"),
        (["--osm", SAMPLE_PBF, "--crs", "EPSG:4326"], "geographic"),
        (["--osm", "{tmp}/missing.osm.pbf"], "does not exist"),
        (["--osm", "{tmp}/garbage.osm.pbf"], "cannot read"),
        (["--osm", "{tmp}/notes.txt"], "supported formats"),
        (["--roads", "{tmp}/drawn.shp"], "has no CRS"),
        (["--osm", SAMPLE_PBF, "--gsd", "0"], "GSD"),
    ],
)
def test_bad_input(tmp_path: Path, nocrs_shapefile: Path, args: list, fragment: str) -> None:
    (tmp_path / "garbage.osm.pbf").write_bytes(b"\x00\x01 not a protobuf at all" * 100)
    (tmp_path / "notes.txt").write_text("roads go here\n")
    filled = [str(a).format(tmp=tmp_path, port=_closed_port()) for a in args]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run_cli("mask", *filled, "-o", out_dir / "m.tif")
    _assert_clean_failure(result, out_dir, fragment)


def test_unwritable_output_fails_before_work(tmp_path: Path) -> None:
    result = run_cli("mask", "--osm", SAMPLE_PBF, "-o", tmp_path / "no" / "such" / "dir" / "m.tif")
    _assert_clean_failure(result, tmp_path, "does not exist")
    result = run_cli("mask", "--osm", SAMPLE_PBF, "-o", tmp_path)
    _assert_clean_failure(result, tmp_path, "is a directory")


def test_cancel_leaves_no_file_and_keeps_old_one(tmp_path: Path) -> None:
    out = tmp_path / "m.tif"
    out.write_bytes(b"previous result")
    with pytest.raises(CancelledError):
        build_mask(out, MaskSource(osm=SAMPLE_PBF), cancel=lambda: True)
    assert out.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tif"]
