"""Bad input through the real CLI: one-line error, exit status != 0, no output file left."""

from __future__ import annotations

import shutil
import socket
import warnings
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from satgen_geo.errors import CancelledError
from satgen_geo.mask import MaskSource, build_mask
from tests.conftest import SAMPLE_AOI, SAMPLE_PBF, run_cli


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


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Copies of the sample extract and AOI, and a small mask GeoTIFF, to be protected."""
    folder = tmp_path / "in"
    folder.mkdir()
    files = {"pbf": folder / "area.osm.pbf", "aoi": folder / "aoi.geojson", "mask": folder / "m.tif"}
    shutil.copyfile(SAMPLE_PBF, files["pbf"])
    shutil.copyfile(SAMPLE_AOI, files["aoi"])
    build_mask(files["mask"], MaskSource(osm=SAMPLE_PBF, bbox=(26.945, 60.525, 26.947, 60.526)))
    (folder / "link.tif").symlink_to(files["mask"])
    return files


@pytest.mark.parametrize(
    ("args", "victim", "flag"),
    [
        (["render", "{mask}", "-o", "{mask}"], "mask", "(--output)"),
        (["render", "{mask}", "-o", "{dir}/link.tif"], "mask", "(--output)"),
        (["mask", "--osm", "{pbf}", "-o", "{pbf}"], "pbf", "(--output)"),
        (["mask", "--osm", "{pbf}", "--aoi", "{aoi}", "-o", "{aoi}"], "aoi", "(--output)"),
        (["generate", "--osm", "{pbf}", "--aoi", "{aoi}", "-o", "{mask}", "--mask-out", "{mask}"], "mask", "(--output)"),
        (["generate", "--osm", "{pbf}", "--aoi", "{aoi}", "-o", "{dir}/x.tif", "--mask-out", "{aoi}"], "aoi",
         "(--mask-out)"),
    ],
    ids=["render-onto-mask", "render-onto-link", "mask-onto-osm", "mask-onto-aoi", "generate-twice", "mask-out-onto-aoi"],
)
def test_output_that_is_an_input_is_refused(
    inputs: dict[str, Path], tiny_checkpoint: Path, args: list, victim: str, flag: str
) -> None:
    before = {name: path.read_bytes() for name, path in inputs.items()}
    filled = [a.format(dir=inputs["mask"].parent, **inputs) for a in args]
    model = ["--checkpoint", tiny_checkpoint] if args[0] != "mask" else []
    result = run_cli(*filled, *model, "--progress", "none")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "same file" in result.stderr and result.stderr.rstrip().endswith(flag)
    assert str(inputs[victim].name) in result.stderr
    assert {name: path.read_bytes() for name, path in inputs.items()} == before
    assert sorted(p.name for p in inputs["mask"].parent.iterdir()) == ["aoi.geojson", "area.osm.pbf", "link.tif", "m.tif"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["mask", "--osm", "{pbf}", "--gsd", "-1"], "--gsd"),
        (["mask", "--osm", "{pbf}", "--gsd", "nan"], "--gsd"),
        (["mask", "--osm", "{pbf}", "--max-pixels", "0"], "--max-pixels"),
        (["mask", "--bbox", "26.945,60.525,26.947,60.526", "--max-area-km2", "0"], "--max-area-km2"),
        (["mask", "--bbox", "26.945,60.525,26.947,60.526", "--overpass-url", "ftp://example.org"], "--overpass-url"),
        (["mask", "--osm", "{pbf}", "--crs", "EPSG:32610"], "--crs"),
        (["render", "{mask}", "--seed", str(1 << 64)], "--seed"),
        (["render", "{mask}", "--batch-size", "65"], "--batch-size"),
        (["render", "{mask}", "--batch-size", "100", "--max-batch-size", "0"], "--max-batch-size"),
        (["render", "{mask}", "--max-windows", "0"], "--max-windows"),
        (["render", "{mask}", "--overlap", "225"], "--overlap"),
        (["render", "{mask}", "--overlap", "-1"], "--overlap"),
    ],
)
def test_option_ranges_are_the_configs_rules(inputs: dict[str, Path], tiny_checkpoint: Path, args: list, flag: str) -> None:
    filled = [a.format(**inputs) for a in args]
    model = ["--checkpoint", tiny_checkpoint] if args[0] == "render" else []
    result = run_cli(*filled, *model, "-o", inputs["mask"].parent / "out.tif", "--progress", "none")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: "), result.stderr
    assert result.stderr.rstrip().endswith(f"({flag})"), result.stderr
    assert "out.tif" not in {p.name for p in inputs["mask"].parent.iterdir()}


def test_largest_overlap_and_batch_limit_are_accepted(inputs: dict[str, Path], tiny_checkpoint: Path) -> None:
    out = inputs["mask"].parent / "out.tif"
    result = run_cli("render", inputs["mask"], "--checkpoint", tiny_checkpoint, "--overlap", "224", "--batch-size", "100",
                     "--max-batch-size", "100", "--max-windows", "100", "-o", out, "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert out.is_file()
