"""The one GeoTIFF writer: profiles, provenance tags, atomic output, overviews and COG."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader

from satgen_geo import __version__
from satgen_geo._atomic import atomic_path, root_cause, write_failure
from satgen_geo.errors import InputFileError, OutputError
from satgen_geo.grid import Grid

#: ``ATTRIBUTION`` of outputs made from OpenStreetMap data (an OSM file or Overpass).
OSM_ATTRIBUTION = "© OpenStreetMap contributors (ODbL 1.0, https://www.openstreetmap.org/copyright)"
#: ``ATTRIBUTION`` of outputs made only from the user's own vector layers.
USER_DATA_ATTRIBUTION = "user-supplied vector data"
BLOCK_PX = 256
#: GDAL block cache while writing: bounds memory for rasters of any size. Blocks are written once, in whole
#: block rows (6 MB for an 8192 px wide RGB strip), so a small cache costs no speed and keeps the peak flat.
_GDAL_CACHE_BYTES = 64 * 1024 * 1024
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
    param: str = "output",
) -> Iterator[rasterio.io.DatasetWriter]:
    """Open a GeoTIFF for writing under a temporary name; it appears at ``path`` only on success.

    With ``cog=True`` the finished file is rewritten as a Cloud Optimized GeoTIFF (with
    overviews unless ``overviews=False``). A failed write is an :class:`OutputError` carrying
    ``param`` (a full disk is named as such). GDAL does not report every failure: blocks it
    flushes on closing can fail unreported, so the closed file's structure is checked
    (:func:`tiff_incomplete`) before it may replace ``path``.
    """
    with atomic_path(path, param) as tmp:
        work = tmp.with_name(tmp.name + ".work.tif") if cog else tmp
        try:
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True, GDAL_CACHEMAX=_GDAL_CACHE_BYTES):
                with rasterio.open(work, "w", **profile) as dst:
                    for band, text in enumerate(descriptions, start=1):
                        dst.set_band_description(band, text)
                    dst.update_tags(SOFTWARE=f"satgen-geo {__version__}", **{k: str(v) for k, v in tags.items()})
                    yield dst
                _check_complete(path, work, param)
                if cog:
                    rasterio.shutil.copy(
                        work, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", BIGTIFF="IF_SAFER",
                        OVERVIEWS="AUTO" if overviews else "NONE",
                    )
                    _check_complete(path, tmp, param)
        except RasterioIOError as err:  # reading an input raises InputFileError (open_raster), not this
            raise OutputError(f"cannot write {path} ({write_failure(tmp, root_cause(err))})", param=param) from None
        finally:
            if cog:
                work.unlink(missing_ok=True)


def _check_complete(path: str | Path, written: Path, param: str) -> None:
    problem = tiff_incomplete(written)
    if problem:
        raise OutputError(f"cannot write {path} ({write_failure(written, problem)})", param=param)


#: TIFF tags holding where each tile or strip is and how long it is: (offsets, byte counts).
_DATA_TAGS = ((324, 325), (273, 279))
_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8: the types these tags use


class _CutShort(Exception):
    """The file ends inside a TIFF structure."""


def tiff_incomplete(path: str | Path) -> str | None:
    """What is missing from a TIFF file, or ``None`` when its structure is whole.

    Walks the chain of image directories (full resolution, internal mask, overviews) and
    checks that each directory, and every tile or strip it points to, lies inside the file.
    Reads the directories only, never the pixels: a file cut short (a full disk, a file size
    limit) is found in milliseconds whatever its size.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        try:
            tiff = _TiffReader(f)
            offset, seen = tiff.first, set()
            while offset:
                if offset in seen:
                    return f"its image directories loop back to byte {offset:,}"
                seen.add(offset)
                entries, offset = tiff.directory(offset)
                for offsets_tag, counts_tag in _DATA_TAGS:
                    ends = [o + c for o, c in zip(entries.get(offsets_tag, ()), entries.get(counts_tag, ()), strict=False) if c]
                    if ends and max(ends) > size:
                        return f"image data up to byte {max(ends):,} lies beyond the end of the {size:,}-byte file"
        except _CutShort as err:
            return f"{err} of the {size:,}-byte file"
    return None


class _TiffReader:
    """Just enough of a TIFF/BigTIFF reader to follow the directories and their tile positions."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        head = self._read(16, 0, "the header")
        self.order = {b"II": "<", b"MM": ">"}.get(head[:2], "")
        magic = struct.unpack(f"{self.order or '<'}H", head[2:4])[0]
        if not self.order or magic not in (42, 43):
            raise _CutShort("no TIFF header at the start")
        self.big = magic == 43
        self.word = "Q" if self.big else "I"  # offsets and counts in entries and links
        self.first = self._unpack(self.word, head[8:16] if self.big else head[4:8])

    def directory(self, offset: int) -> tuple[dict[int, tuple[int, ...]], int]:
        """The tile/strip position tags of the directory at ``offset``, and the next directory's offset."""
        count_fmt, entry_size = ("Q", 20) if self.big else ("H", 12)
        count = self._unpack(count_fmt, self._read(struct.calcsize(count_fmt), offset, "an image directory"))
        table = self._read(count * entry_size, None, "an image directory")
        link = self._read(struct.calcsize(self.word), None, "an image directory")
        wanted = {tag for pair in _DATA_TAGS for tag in pair}
        entries = {}
        for i in range(count):
            entry = table[i * entry_size : (i + 1) * entry_size]
            tag, kind = struct.unpack(self.order + "HH", entry[:4])
            if tag in wanted and kind in _TYPES:
                entries[tag] = self._values(entry, kind)
        return entries, self._unpack(self.word, link)

    def _values(self, entry: bytes, kind: int) -> tuple[int, ...]:
        inline = 8 if self.big else 4
        n = self._unpack(self.word, entry[4 : 4 + inline])
        fmt = f"{self.order}{n}{_TYPES[kind]}"
        data = entry[-inline:]
        if struct.calcsize(fmt) > inline:
            here = self.f.tell()
            data = self._read(struct.calcsize(fmt), self._unpack(self.word, data), "a table of tile positions")
            self.f.seek(here)
        return struct.unpack(fmt, data[: struct.calcsize(fmt)])

    def _read(self, n: int, offset: int | None, what: str) -> bytes:
        if offset is not None:
            self.f.seek(offset)
        start = self.f.tell()
        data = self.f.read(n)
        if len(data) < n:
            raise _CutShort(f"{what} at byte {start:,} runs past the end")
        return data

    def _unpack(self, fmt: str, data: bytes) -> int:
        return int(struct.unpack(self.order + fmt, data)[0])


def build_overviews(dst: rasterio.io.DatasetWriter) -> None:
    """Add internal overviews (2×, 4×, … down to about 256 px) to a dataset being written."""
    factors = []
    factor = 2
    while max(dst.width, dst.height) // factor >= _OVERVIEW_MIN_PX:
        factors.append(factor)
        factor *= 2
    if factors:
        dst.build_overviews(factors, Resampling.average)


def open_raster(path: str | Path, param: str | None = None) -> DatasetReader:
    """Open an input GeoTIFF; GDAL's errors, on opening or on any later read, are :class:`InputFileError`.

    A GeoTIFF cut short is refused at once (:func:`tiff_incomplete`). The dataset's ``read``,
    ``read_masks`` and ``dataset_mask`` raise an ``InputFileError`` naming ``path`` (and
    carrying ``param``) when the file turns out to be damaged, so that such a failure is
    never taken for a failure to write an output.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"input raster {path} does not exist; check the path", param=param)
    try:
        dataset = rasterio.open(path)
    except RasterioIOError as err:
        raise InputFileError(f"cannot read {path} as a raster ({root_cause(err)}); give a GeoTIFF", param=param) from None
    problem = tiff_incomplete(path) if dataset.driver == "GTiff" else None
    if problem:
        dataset.close()
        raise InputFileError(f"cannot read {path}: the file is truncated ({problem}); make or copy it again", param=param)
    if type(dataset) is DatasetReader:
        dataset.__class__ = _InputDataset  # same layout; only the read methods differ
        dataset._satgen_param = param
    return dataset


class _InputDataset(DatasetReader):
    """A :class:`DatasetReader` whose reads raise :class:`InputFileError` naming the file."""

    _satgen_param: str | None = None

    def read(self, *args: Any, **kwargs: Any) -> np.ndarray:  # noqa: D102
        with self._input_errors():
            return super().read(*args, **kwargs)

    def read_masks(self, *args: Any, **kwargs: Any) -> np.ndarray:  # noqa: D102
        with self._input_errors():
            return super().read_masks(*args, **kwargs)

    def dataset_mask(self, *args: Any, **kwargs: Any) -> np.ndarray:  # noqa: D102
        with self._input_errors():
            return super().dataset_mask(*args, **kwargs)

    @contextmanager
    def _input_errors(self) -> Iterator[None]:
        try:
            yield
        except RasterioIOError as err:
            raise InputFileError(
                f"cannot read {self.name}: the file is damaged or truncated ({root_cause(err)}); "
                "make or copy it again", param=self._satgen_param,
            ) from None
