"""The one GeoTIFF writer: profiles, provenance tags and atomic (temp-then-rename) output."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

from satgen_geo import __version__
from satgen_geo.errors import InputFileError, OutputError
from satgen_geo.grid import Grid

OSM_ATTRIBUTION = "© OpenStreetMap contributors (ODbL 1.0, https://www.openstreetmap.org/copyright)"
BLOCK_PX = 256


def check_writable(path: str | Path) -> Path:
    """Fail early, before any heavy work, if ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give a file name such as {path / 'out.tif'}")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist; create it or choose another -o path")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write {path}: permission denied; choose another -o path")
    return path


def profile(grid: Grid, count: int, **extra: object) -> dict:
    """A tiled, deflate-compressed uint8 GeoTIFF profile for ``grid``."""
    return {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": count,
        "width": grid.width,
        "height": grid.height,
        "crs": grid.crs,
        "transform": grid.transform,
        "tiled": True,
        "blockxsize": BLOCK_PX,
        "blockysize": BLOCK_PX,
        "compress": "deflate",
        "predictor": 2,
        "interleave": "pixel",
        "BIGTIFF": "IF_SAFER",
        **extra,
    }


@contextmanager
def open_for_writing(
    path: str | Path, profile: Mapping, descriptions: tuple[str, ...], tags: Mapping[str, object]
) -> Iterator[rasterio.io.DatasetWriter]:
    """Open a temp file next to ``path`` for writing; rename it to ``path`` only on success.

    On any exception (including cancellation) the temp file is removed and ``path`` is
    left untouched, so a half-written output never exists under the final name.
    """
    path = check_writable(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "w", **profile) as dst:
            for band, text in enumerate(descriptions, start=1):
                dst.set_band_description(band, text)
            dst.update_tags(SOFTWARE=f"satgen-geo {__version__}", **{k: str(v) for k, v in tags.items()})
            yield dst
        os.replace(tmp, path)
    except RasterioIOError as err:
        raise OutputError(f"cannot write {path}: {err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def open_raster(path: str | Path) -> rasterio.io.DatasetReader:
    """Open an input GeoTIFF, mapping GDAL's errors to a one-line :class:`InputFileError`."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"input raster {path} does not exist; check the path")
    try:
        return rasterio.open(path)
    except RasterioIOError as err:
        raise InputFileError(f"cannot read {path} as a raster ({str(err).splitlines()[0]}); give a GeoTIFF") from None
