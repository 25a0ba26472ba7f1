"""The render jobs the queue runs on its worker threads, one per endpoint.

Each job works in its own temporary folder, goes through the same streaming engine as
``satgen render`` (:func:`satgen_geo.engine.render`), honours ``cancel()``, and reports
toolkit errors with the temporary paths replaced by what the client sent.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from satgen_geo.api.errors import scrubbed_paths
from satgen_geo.api.painted import decode_painted
from satgen_geo.engine import RenderConfig, render
from satgen_geo.grid import Grid, aoi_from_bbox
from satgen_geo.mask import MaskConfig, MaskSource, mask_grid
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.pipeline import generate
from satgen_geo.progress import CancelFn

#: The CRS of the temporary GeoTIFF a painted PNG becomes: any metric CRS will do.
_PNG_CRS = "EPSG:3857"


@contextmanager
def _workspace(name: str) -> Iterator[Path]:
    """A temporary folder; toolkit errors raised inside name ``name`` instead of its paths."""
    with tempfile.TemporaryDirectory(prefix="satgen-api-") as tmp, scrubbed_paths(tmp, name):
        yield Path(tmp)


def render_painted(data: bytes, model: LoadedModel, config: RenderConfig, cancel: CancelFn) -> bytes:
    """Painted mask bytes → PNG bytes of the same size (as a 1 m EPSG:3857 mask GeoTIFF in between)."""
    mask = decode_painted(data)
    _, height, width = mask.shape
    with _workspace("the painted mask") as tmp:
        meta = {
            "driver": "GTiff", "dtype": "uint8", "count": 2, "width": width, "height": height,
            "crs": _PNG_CRS, "transform": from_origin(0.0, float(height), 1.0, 1.0),
        }
        with rasterio.open(tmp / "mask.tif", "w", **meta) as dst:
            dst.write(mask)
        render(tmp / "mask.tif", tmp / "image.tif", model, config, cancel=cancel)
        with rasterio.open(tmp / "image.tif") as src:
            rgb = src.read()
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0)), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def render_geotiff(data: bytes, model: LoadedModel, config: RenderConfig, cancel: CancelFn) -> bytes:
    """Mask GeoTIFF bytes → RGB GeoTIFF bytes with the same CRS and transform."""
    with _workspace("the uploaded GeoTIFF") as tmp:
        (tmp / "mask.tif").write_bytes(data)
        render(tmp / "mask.tif", tmp / "image.tif", model, config, cancel=cancel)
        return (tmp / "image.tif").read_bytes()


def bbox_grid(bbox: list[float], gsd: float) -> Grid:
    """The grid ``satgen generate`` will draw for the bbox (validates it: AOIError → 422)."""
    return mask_grid(aoi_from_bbox(bbox), MaskConfig(gsd_m=gsd))[0]


def render_bbox(
    source: MaskSource, mask_config: MaskConfig, model: LoadedModel, config: RenderConfig, cancel: CancelFn
) -> bytes:
    """An area's OSM mask → RGB GeoTIFF bytes, as ``satgen generate`` makes it."""
    with _workspace("the area") as tmp:
        generate(tmp / "image.tif", source, model, mask_config, config, cancel=cancel)
        return (tmp / "image.tif").read_bytes()
