"""The one GeoTIFF writer: profiles, provenance tags, atomic output, overviews and COG."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError

from satgen_geo import __version__
from satgen_geo._atomic import atomic_path
from satgen_geo.errors import InputFileError, OutputError
from satgen_geo.grid import Grid

OSM_ATTRIBUTION = "© OpenStreetMap contributors (ODbL 1.0, https://www.openstreetmap.org/copyright)"
BLOCK_PX = 256
#: GDAL block cache while writing: bounds memory for rasters of any size.
_GDAL_CACHE_BYTES = 256 * 1024 * 1024
_OVERVIEW_MIN_PX = 256


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
    path: str | Path,
    profile: Mapping,
    descriptions: tuple[str, ...],
    tags: Mapping[str, object],
    cog: bool = False,
    overviews: bool = True,
) -> Iterator[rasterio.io.DatasetWriter]:
    """Open a GeoTIFF for writing under a temporary name; it appears at ``path`` only on success.

    With ``cog=True`` the finished file is rewritten as a Cloud Optimized GeoTIFF (with
    overviews unless ``overviews=False``).
    """
    with atomic_path(path) as tmp:
        work = tmp.with_name(tmp.name + ".work.tif") if cog else tmp
        try:
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, GDAL_CACHEMAX=_GDAL_CACHE_BYTES):
                with rasterio.open(work, "w", **profile) as dst:
                    for band, text in enumerate(descriptions, start=1):
                        dst.set_band_description(band, text)
                    dst.update_tags(SOFTWARE=f"satgen-geo {__version__}", **{k: str(v) for k, v in tags.items()})
                    yield dst
                if cog:
                    rasterio.shutil.copy(
                        work, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", BIGTIFF="IF_SAFER",
                        OVERVIEWS="AUTO" if overviews else "NONE",
                    )
        except RasterioIOError as err:
            raise OutputError(f"cannot write {path}: {str(err).splitlines()[0]}") from None
        finally:
            if cog:
                work.unlink(missing_ok=True)


def build_overviews(dst: rasterio.io.DatasetWriter) -> None:
    """Add internal overviews (2×, 4×, … down to about 256 px) to a dataset being written."""
    factors = []
    factor = 2
    while max(dst.width, dst.height) // factor >= _OVERVIEW_MIN_PX:
        factors.append(factor)
        factor *= 2
    if factors:
        dst.build_overviews(factors, Resampling.average)


def open_raster(path: str | Path) -> rasterio.io.DatasetReader:
    """Open an input GeoTIFF, mapping GDAL's errors to a one-line :class:`InputFileError`."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"input raster {path} does not exist; check the path")
    try:
        return rasterio.open(path)
    except RasterioIOError as err:
        raise InputFileError(f"cannot read {path} as a raster ({str(err).splitlines()[0]}); give a GeoTIFF") from None
