"""geotiff.py on its own: the writer (tags, atomicity, COG), the completeness check, input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS

from satgen_geo.errors import InputFileError
from satgen_geo.geotiff import open_for_writing, open_raster, profile, tiff_incomplete
from satgen_geo.grid import Grid

GRID = Grid(CRS.from_epsg(32635), Affine(1.0, 0.0, 500_000.0, 0.0, -1.0, 6_710_000.0), 700, 530)


def _pattern(count: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((count, GRID.height, GRID.width)) < 0.3).astype(np.uint8) * 255


def _write(path: Path, **options: object) -> Path:
    with open_for_writing(path, profile(GRID, 2, **options), ("roads", "buildings"), {"ATTRIBUTION": "test"}) as dst:
        dst.write(_pattern())
    return path


def test_written_file_has_grid_tags_and_descriptions(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.tif")
    with rasterio.open(path) as ds:
        assert (ds.width, ds.height, ds.count, ds.crs.to_epsg()) == (700, 530, 2, 32635)
        assert ds.transform == GRID.transform and ds.profile["tiled"] and ds.compression.value == "DEFLATE"
        assert ds.descriptions == ("roads", "buildings")
        assert ds.tags()["ATTRIBUTION"] == "test" and ds.tags()["SOFTWARE"].startswith("satgen-geo ")
        np.testing.assert_array_equal(ds.read(), _pattern())
    assert [p.name for p in tmp_path.iterdir()] == ["m.tif"]


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "m.tif"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="boom"):
        with open_for_writing(path, profile(GRID, 2), ("roads", "buildings"), {}) as dst:
            dst.write(_pattern())
            raise RuntimeError("boom")
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["m.tif"]


@pytest.mark.parametrize("layout", ["gtiff", "bigtiff", "cog"])
def test_complete_files_pass_and_cut_ones_fail(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "m.tif"
    if layout == "cog":
        with open_for_writing(path, profile(GRID, 2), ("roads", "buildings"), {}, cog=True) as dst:
            dst.write(_pattern())
    else:
        _write(path, BIGTIFF="YES" if layout == "bigtiff" else "NO")
    assert tiff_incomplete(path) is None
    data = path.read_bytes()
    for keep in (len(data) - 8, len(data) // 2, 300, 10):  # (a COG's last 4 bytes repeat its last tile's)
        cut = tmp_path / f"cut{keep}.tif"
        cut.write_bytes(data[:keep])
        problem = tiff_incomplete(cut)
        assert problem is not None and f"{keep:,}-byte file" in problem, (keep, problem)


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "x.tif"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert "no TIFF header" in tiff_incomplete(path)


def test_truncated_input_is_refused_on_opening(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.tif")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputFileError, match="truncated") as info:
        open_raster(path, "mask")
    assert info.value.param == "mask" and str(path) in str(info.value)


def test_damaged_input_fails_on_reading_as_an_input_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.tif")
    data = bytearray(path.read_bytes())
    with rasterio.open(path) as ds:  # overwrite the middle of the first tile's compressed bytes
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    data[offset + 2 : offset + size - 2] = bytes(size - 4)
    path.write_bytes(bytes(data))
    with open_raster(path, "mask") as src:  # whole structure: opens fine
        with pytest.raises(InputFileError, match="damaged or truncated") as info:
            src.read(1, window=((0, 256), (0, 256)))
        assert info.value.param == "mask" and "m.tif" in str(info.value)
        assert src.read(1, window=((256, 512), (256, 512))).shape == (256, 256)  # other tiles still read


def test_missing_and_non_raster_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        open_raster(tmp_path / "missing.tif")
    (tmp_path / "notes.tif").write_text("not a raster")
    with pytest.raises(InputFileError, match="cannot read"):
        open_raster(tmp_path / "notes.tif")
