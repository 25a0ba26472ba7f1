"""GDAL VRTs over chunk files: the region mosaic, and a chunk's halo mask placed on the whole grid.

A VRT is a small XML file that GDAL (and so rasterio, QGIS) reads as one raster assembled
from others, instantly, without copying pixels (what ``gdalbuildvrt`` writes). Sources keep
their per-dataset masks through the VRT's ``<MaskBand>``. :func:`write_cog` turns the mosaic
into one Cloud Optimized GeoTIFF with overviews when asked.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import rasterio.shutil
from rasterio.errors import RasterioIOError

from satgen_geo._atomic import atomic_path
from satgen_geo.errors import OutputError
from satgen_geo.geotiff import BLOCK_PX
from satgen_geo.grid import Grid
from satgen_geo.region.chunks import PixelBox


@dataclass(frozen=True)
class Source:
    """One raster placed in a VRT: its file and the grid pixels it covers (its whole extent)."""

    path: Path
    box: PixelBox


def write_vrt(
    path: Path,
    grid: Grid,
    bands: Sequence[tuple[str, str | None]],
    sources: Sequence[Source],
    metadata: Mapping[str, str] | None = None,
    mask: bool = True,
) -> Path:
    """Write (atomically) a VRT of ``grid`` from ``sources``; pixels no source covers read as 0.

    Parameters
    ----------
    path
        The ``.vrt`` file; sources are referenced relative to its folder when they lie below it.
    grid
        The VRT's CRS, transform and size.
    bands
        ``(description, colour interpretation or None)`` per band, e.g. ``("red", "Red")``.
    sources
        Rasters with the VRT's band count, pixel size and CRS, each placed at its box.
    metadata
        Dataset metadata (the provenance tags).
    mask
        Add a per-dataset mask band built from the sources' masks (0 where no source).
    """
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = grid.crs.to_wkt()
    t = grid.transform
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    if metadata:
        items = ET.SubElement(root, "Metadata")
        for key, value in metadata.items():
            ET.SubElement(items, "MDI", key=key).text = str(value)
    for number, (description, colour) in enumerate(bands, start=1):
        band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band=str(number))
        ET.SubElement(band, "Description").text = description
        if colour:
            ET.SubElement(band, "ColorInterp").text = colour
        _add_sources(band, sources, str(number), path.parent)
    if mask:
        mask_band = ET.SubElement(ET.SubElement(root, "MaskBand"), "VRTRasterBand", dataType="Byte")
        _add_sources(mask_band, sources, "mask,1", path.parent)
    ET.indent(root)
    with atomic_path(path, param="outdir") as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=False)
    return path


def _add_sources(band: ET.Element, sources: Sequence[Source], source_band: str, folder: Path) -> None:
    for source in sources:
        box = source.box
        simple = ET.SubElement(band, "SimpleSource")
        relative = _relative(source.path, folder)
        name = ET.SubElement(simple, "SourceFilename", relativeToVRT="0" if relative is None else "1")
        name.text = str(source.path.resolve()) if relative is None else relative
        ET.SubElement(simple, "SourceBand").text = source_band
        ET.SubElement(
            simple, "SourceProperties", RasterXSize=str(box.width), RasterYSize=str(box.height), DataType="Byte",
            BlockXSize=str(BLOCK_PX), BlockYSize=str(BLOCK_PX),
        )
        ET.SubElement(simple, "SrcRect", xOff="0", yOff="0", xSize=str(box.width), ySize=str(box.height))
        ET.SubElement(simple, "DstRect", xOff=str(box.col_off), yOff=str(box.row_off), xSize=str(box.width),
                      ySize=str(box.height))


def _relative(path: Path, folder: Path) -> str | None:
    """``path`` relative to ``folder`` (a VRT moved with its sources keeps working), else ``None``."""
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return None


def write_cog(vrt: Path, output: Path) -> Path:
    """Copy the mosaic ``vrt`` into one Cloud Optimized GeoTIFF (deflate, overviews), atomically."""
    with atomic_path(output) as tmp:
        try:
            rasterio.shutil.copy(
                vrt, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES", BIGTIFF="IF_SAFER", OVERVIEWS="AUTO",
            )
        except RasterioIOError as err:
            raise OutputError(f"cannot write the mosaic {output}: {str(err).splitlines()[0]}") from None
    return output
