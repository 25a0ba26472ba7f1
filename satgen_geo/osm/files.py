"""Read local OSM extracts and user vector layers into the common raw feature frame.

The raw frame is a GeoDataFrame in EPSG:4326 with object columns ``highway``,
``building``, ``width``, ``lanes`` and a geometry: the same shape as
:func:`satgen_geo.osm.fetch.fetch_osm` returns, so everything downstream is shared.
"""

from __future__ import annotations

import bz2
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS

from satgen_geo._atomic import scratch_dir
from satgen_geo.errors import CRSError, InputFileError
from satgen_geo.grid import AOI, WGS84, wgs84_bounds

log = logging.getLogger(__name__)

RAW_COLUMNS = ["highway", "building", "width", "lanes"]
OSM_SUFFIXES = (".osm", ".osm.pbf", ".pbf", ".osm.bz2")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".zip")
_SUPPORTED = ".osm, .osm.bz2, .osm.pbf, .gpkg, .geojson, .shp, .fgb"


def empty_raw() -> gpd.GeoDataFrame:
    """An empty raw feature frame."""
    return gpd.GeoDataFrame({c: pd.Series(dtype=object) for c in RAW_COLUMNS}, geometry=gpd.GeoSeries(crs=WGS84))


def is_osm_file(path: str | Path) -> bool:
    """True for an OSM extract (``.osm``, ``.osm.bz2``, ``.osm.pbf``) by its name."""
    return Path(path).name.lower().endswith(OSM_SUFFIXES)


def read_features(path: str | Path, aoi: AOI | None = None, param: str = "osm_file") -> gpd.GeoDataFrame:
    """Read roads and buildings from a local file.

    Parameters
    ----------
    path
        An OSM extract (``.osm``, ``.osm.bz2``, ``.osm.pbf``) or a vector file (GeoPackage,
        GeoJSON, Shapefile, FlatGeobuf) in any CRS, where lines are roads and polygons are
        buildings (its ``highway``/``width``/``lanes`` columns are used when present).
    aoi
        Only features intersecting the AOI's bounding box are read (``None``: all).
    param
        The concept ``path`` was given as (``osm_file``, ``roads_file``, …), carried by errors.

    Returns
    -------
    geopandas.GeoDataFrame
        The raw feature frame in EPSG:4326.
    """
    path = _existing(path, param)
    if is_osm_file(path):
        return _read_osm(path, aoi, param)
    return _read_vector(path, aoi, param)


def _existing(path: str | Path, param: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"input file {path} does not exist; check the path", param=param)
    return path


def file_bounds(path: str | Path, param: str = "osm_file") -> tuple[float, float, float, float] | None:
    """The extent a file declares (EPSG:4326 west, south, east, north) without reading its features.

    An OSM file's header bounds; the union of a vector file's line and polygon layer extents
    (from the layer metadata where the format keeps them). ``None`` when the file declares
    none (an OSM file without bounds, an empty layer): then only its features tell.
    """
    path = _existing(path, param)
    if is_osm_file(path):
        with _plain_osm(path, param) as plain:
            extents = [_layer_bounds(plain, "lines", param)]
    else:
        extents = [_layer_bounds(path, layer, param) for layer in _vector_layers(path, param)]
    known = [extent for extent in extents if extent is not None]
    if not known or len(known) < len(extents):
        return None
    return (min(e[0] for e in known), min(e[1] for e in known), max(e[2] for e in known), max(e[3] for e in known))


def _layer_bounds(path: Path, layer: str, param: str) -> tuple[float, float, float, float] | None:
    """One layer's declared extent in EPSG:4326, or ``None`` if it has none."""
    try:
        info = pyogrio.read_info(path, layer=layer, force_total_bounds=True)
    except (DataSourceError, DataLayerError) as err:
        raise _unreadable(path, err, param) from None
    bounds = info.get("total_bounds")
    if bounds is None or not np.isfinite(bounds).all():
        return None
    return wgs84_bounds(bounds, WGS84 if is_osm_file(path) else CRS.from_user_input(_layer_crs(path, layer, info, param)))


def _layer_crs(path: Path, layer: str, info: dict, param: str) -> str:
    if not info.get("crs"):
        raise CRSError(
            f"{path} (layer {layer!r}) has no CRS; assign one in your GIS or with "
            f"'ogr2ogr -a_srs EPSG:<code> out.gpkg {path.name}' and try again", param=param,
        )
    return info["crs"]


@contextmanager
def _plain_osm(path: Path, param: str) -> Iterator[Path]:
    """Yield a path GDAL's OSM driver can open (``.osm.bz2`` is decompressed to a temp file)."""
    if not path.name.lower().endswith(".bz2"):
        yield path
        return
    with scratch_dir(prefix="satgen-osm-") as tmp:
        plain = tmp / path.name[: -len(".bz2")]
        try:
            with bz2.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
        except (OSError, EOFError) as err:
            raise InputFileError(f"cannot decompress {path}: {err}; is it a valid .osm.bz2 file?", param=param) from None
        yield plain


def _unreadable(path: Path, err: Exception, param: str) -> InputFileError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return InputFileError(f"cannot read {path} ({reason}); supported formats: {_SUPPORTED}", param=param)


def _bbox(aoi: AOI | None) -> tuple[float, float, float, float] | None:
    return None if aoi is None else aoi.to_crs(WGS84).bounds


def _read_layer(path: Path, layer: str, columns: list[str], bbox: tuple | None) -> gpd.GeoDataFrame:
    frame = pyogrio.read_dataframe(path, layer=layer, columns=columns, bbox=bbox, on_invalid="ignore")
    dropped = int(frame.geometry.isna().sum())
    if dropped:
        log.warning("%s: dropped %d %s with degenerate geometry (rings with < 3 points)", path.name, dropped, layer)
    return frame[frame.geometry.notna()]


def _read_osm(path: Path, aoi: AOI | None, param: str) -> gpd.GeoDataFrame:
    bbox = _bbox(aoi)
    with _plain_osm(path, param) as plain:
        try:
            lines = _read_layer(plain, "lines", ["highway", "other_tags"], bbox)
            polygons = _read_layer(plain, "multipolygons", ["building", "other_tags"], bbox)
        except (DataSourceError, DataLayerError) as err:
            raise _unreadable(path, err, param) from None
    lines = lines[lines["highway"].notna()]
    polygons = polygons[polygons["building"].notna()]
    frame = pd.concat([lines, polygons], ignore_index=True)
    tags = frame["other_tags"].astype("string")
    for key in ("width", "lanes"):
        frame[key] = tags.str.extract(rf'"{key}"=>"([^"]*)"', expand=False).astype(object)
    frame = gpd.GeoDataFrame(frame.reindex(columns=[*RAW_COLUMNS, "geometry"]), geometry="geometry", crs=WGS84)
    log.info("%s: %d highway and %d building features", path.name, len(lines), len(polygons))
    return frame


def _vector_layers(path: Path, param: str) -> list[str]:
    """The layers of a vector file that may hold lines or polygons."""
    try:
        layers = pyogrio.list_layers(path)
    except (DataSourceError, DataLayerError) as err:
        raise _unreadable(path, err, param) from None
    return [name for name, geom_type in layers if geom_type is not None and "Point" not in geom_type]


def _read_vector(path: Path, aoi: AOI | None, param: str) -> gpd.GeoDataFrame:
    frames = [_read_vector_layer(path, layer, aoi, param) for layer in _vector_layers(path, param)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_raw()
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=WGS84)


def _read_vector_layer(path: Path, layer: str, aoi: AOI | None, param: str) -> gpd.GeoDataFrame:
    try:
        crs = CRS.from_user_input(_layer_crs(path, layer, pyogrio.read_info(path, layer=layer), param))
        bbox = None if aoi is None else aoi.to_crs(crs).bounds
        frame = pyogrio.read_dataframe(path, layer=layer, bbox=bbox, on_invalid="ignore")
    except (DataSourceError, DataLayerError) as err:
        raise _unreadable(path, err, param) from None
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
        raise InputFileError(f"AOI file {path} does not exist; check the path", param="aoi_file")
    try:
        frame = pyogrio.read_dataframe(path, on_invalid="ignore")
    except (DataSourceError, DataLayerError) as err:
        raise _unreadable(path, err, "aoi_file") from None
    if frame.crs is None:
        raise CRSError(f"AOI file {path} has no CRS; assign one in your GIS or with ogr2ogr -a_srs EPSG:<code>",
                       param="aoi_file")
    geoms = frame.geometry.dropna().values
    polygons = geoms[np.isin(shapely.get_type_id(geoms), (3, 6))]
    if not len(polygons):
        raise InputFileError(f"AOI file {path} has no polygons; draw the area as a polygon layer", param="aoi_file")
    return AOI(shapely.make_valid(shapely.union_all(polygons)), frame.crs)
