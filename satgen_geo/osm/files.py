"""Read local OSM extracts and user vector layers into the common raw feature frame.

The raw frame is a GeoDataFrame in EPSG:4326 with object columns ``highway``,
``building``, ``width``, ``lanes`` and a geometry: the same shape as
:func:`satgen_geo.osm.fetch.fetch_osm` returns, so everything downstream is shared.
"""

from __future__ import annotations

import bz2
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError

from satgen_geo.errors import CRSError, InputFileError
from satgen_geo.grid import AOI, WGS84

log = logging.getLogger(__name__)

RAW_COLUMNS = ["highway", "building", "width", "lanes"]
OSM_SUFFIXES = (".osm", ".osm.pbf", ".pbf", ".osm.bz2")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".zip")
_SUPPORTED = ".osm, .osm.bz2, .osm.pbf, .gpkg, .geojson, .shp, .fgb"


def empty_raw() -> gpd.GeoDataFrame:
    """An empty raw feature frame."""
    return gpd.GeoDataFrame({c: pd.Series(dtype=object) for c in RAW_COLUMNS}, geometry=gpd.GeoSeries(crs=WGS84))


def _is_osm(path: Path) -> bool:
    return path.name.lower().endswith(OSM_SUFFIXES)


def read_features(path: str | Path, aoi: AOI | None = None) -> gpd.GeoDataFrame:
    """Read roads and buildings from a local file.

    Parameters
    ----------
    path
        An OSM extract (``.osm``, ``.osm.bz2``, ``.osm.pbf``) or a vector file (GeoPackage,
        GeoJSON, Shapefile, FlatGeobuf) in any CRS, where lines are roads and polygons are
        buildings (its ``highway``/``width``/``lanes`` columns are used when present).
    aoi
        Only features intersecting the AOI's bounding box are read (``None``: all).

    Returns
    -------
    geopandas.GeoDataFrame
        The raw feature frame in EPSG:4326.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"input file {path} does not exist; check the path")
    if _is_osm(path):
        return _read_osm(path, aoi)
    return _read_vector(path, aoi)


def osm_file_bounds(path: str | Path) -> tuple[float, float, float, float] | None:
    """The extent an OSM file declares in its header (EPSG:4326), or ``None``."""
    path = Path(path)
    if not _is_osm(path):
        return None
    with _plain_osm(path) as plain:
        try:
            bounds = pyogrio.read_info(plain, layer="lines", force_total_bounds=True).get("total_bounds")
        except (DataSourceError, DataLayerError) as err:
            raise _unreadable(path, err) from None
    if bounds is None or not all(map(_finite, bounds)):
        return None
    return tuple(float(b) for b in bounds)  # type: ignore[return-value]


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


@contextmanager
def _plain_osm(path: Path) -> Iterator[Path]:
    """Yield a path GDAL's OSM driver can open (``.osm.bz2`` is decompressed to a temp file)."""
    if not path.name.lower().endswith(".bz2"):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="satgen-osm-") as tmp:
        plain = Path(tmp) / path.name[: -len(".bz2")]
        try:
            with bz2.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
        except (OSError, EOFError) as err:
            raise InputFileError(f"cannot decompress {path}: {err}; is it a valid .osm.bz2 file?") from None
        yield plain


def _unreadable(path: Path, err: Exception) -> InputFileError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return InputFileError(f"cannot read {path} ({reason}); supported formats: {_SUPPORTED}")


def _bbox(aoi: AOI | None) -> tuple[float, float, float, float] | None:
    return None if aoi is None else aoi.to_crs(WGS84).bounds


def _read_layer(path: Path, layer: str, columns: list[str], bbox: tuple | None) -> gpd.GeoDataFrame:
    frame = pyogrio.read_dataframe(path, layer=layer, columns=columns, bbox=bbox, on_invalid="ignore")
    dropped = int(frame.geometry.isna().sum())
    if dropped:
        log.warning("%s: dropped %d %s with degenerate geometry (rings with < 3 points)", path.name, dropped, layer)
    return frame[frame.geometry.notna()]


def _read_osm(path: Path, aoi: AOI | None) -> gpd.GeoDataFrame:
    bbox = _bbox(aoi)
    with _plain_osm(path) as plain:
        try:
            lines = _read_layer(plain, "lines", ["highway", "other_tags"], bbox)
            polygons = _read_layer(plain, "multipolygons", ["building", "other_tags"], bbox)
        except (DataSourceError, DataLayerError) as err:
            raise _unreadable(path, err) from None
    lines = lines[lines["highway"].notna()]
    polygons = polygons[polygons["building"].notna()]
    frame = pd.concat([lines, polygons], ignore_index=True)
    tags = frame["other_tags"].astype("string")
    for key in ("width", "lanes"):
        frame[key] = tags.str.extract(rf'"{key}"=>"([^"]*)"', expand=False).astype(object)
    frame = gpd.GeoDataFrame(frame.reindex(columns=[*RAW_COLUMNS, "geometry"]), geometry="geometry", crs=WGS84)
    log.info("%s: %d highway and %d building features", path.name, len(lines), len(polygons))
    return frame


def _read_vector(path: Path, aoi: AOI | None) -> gpd.GeoDataFrame:
    try:
        layers = [name for name, geom_type in pyogrio.list_layers(path) if geom_type is not None]
    except (DataSourceError, DataLayerError) as err:
        raise _unreadable(path, err) from None
    frames = [_read_vector_layer(path, layer, aoi) for layer in layers]
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_raw()
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=WGS84)


def _read_vector_layer(path: Path, layer: str, aoi: AOI | None) -> gpd.GeoDataFrame:
    try:
        info = pyogrio.read_info(path, layer=layer)
        if not info.get("crs"):
            raise CRSError(
                f"{path} (layer {layer!r}) has no CRS; assign one in your GIS or with "
                f"'ogr2ogr -a_srs EPSG:<code> out.gpkg {path.name}' and try again"
            )
        bbox = None if aoi is None else aoi.to_crs(info["crs"]).bounds
        frame = pyogrio.read_dataframe(path, layer=layer, bbox=bbox, on_invalid="ignore")
    except (DataSourceError, DataLayerError) as err:
        raise _unreadable(path, err) from None
    frame = frame[frame.geometry.notna()].to_crs(WGS84)
    kind = shapely.get_type_id(frame.geometry.values)
    is_line = (kind == 1) | (kind == 5)
    is_polygon = (kind == 3) | (kind == 6)
    columns = {c.lower(): c for c in frame.columns}
    out = gpd.GeoDataFrame(geometry=frame.geometry.values, crs=WGS84)
    highway = (
        frame[columns["highway"]].astype("string").replace("", pd.NA).fillna("road")
        if "highway" in columns else pd.Series("road", index=frame.index)
    )
    out["highway"] = highway.where(is_line, None).to_numpy(dtype=object)
    building = frame[columns["building"]].fillna("yes") if "building" in columns else "yes"
    out["building"] = pd.Series(building, index=frame.index).where(is_polygon, None).to_numpy(dtype=object)
    for key in ("width", "lanes"):
        out[key] = frame[columns[key]].astype(object).to_numpy() if key in columns else None
    log.info("%s/%s: %d line and %d polygon features", path.name, layer, int(is_line.sum()), int(is_polygon.sum()))
    return out[is_line | is_polygon].reindex(columns=[*RAW_COLUMNS, "geometry"])


def read_aoi(path: str | Path) -> AOI:
    """Read an AOI: the union of all polygons in a vector file (any CRS, which must be set)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"AOI file {path} does not exist; check the path")
    try:
        frame = pyogrio.read_dataframe(path, on_invalid="ignore")
    except (DataSourceError, DataLayerError) as err:
        raise _unreadable(path, err) from None
    if frame.crs is None:
        raise CRSError(f"AOI file {path} has no CRS; assign one in your GIS or with ogr2ogr -a_srs EPSG:<code>")
    geoms = frame.geometry.dropna().values
    polygons = geoms[np.isin(shapely.get_type_id(geoms), (3, 6))]
    if not len(polygons):
        raise InputFileError(f"AOI file {path} has no polygons; draw the area as a polygon layer")
    return AOI(shapely.make_valid(shapely.union_all(polygons)), frame.crs)
