"""OSM or vector features → a georeferenced two-band mask GeoTIFF (the ``satgen mask`` job)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from satgen_geo.errors import AOIError, InputFileError
from satgen_geo._atomic import check_writable
from satgen_geo.geotiff import OSM_ATTRIBUTION, open_for_writing, profile
from satgen_geo.grid import AOI, WGS84, Grid, aoi_from_bbox, resolve_crs, snap_grid
from satgen_geo.osm.features import select_features
from satgen_geo.osm.fetch import OverpassConfig, fetch_osm
from satgen_geo.osm.files import empty_raw, osm_file_bounds, read_aoi, read_features
from satgen_geo.osm.roads import RoadConfig
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.rasterize import BAND_NAMES, DrawableShapes, iter_blocks, prepare_shapes, rasterize_aoi, rasterize_window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskConfig:
    """How the mask is drawn.

    Parameters
    ----------
    gsd_m
        Pixel size in metres (1.0 matches the training data).
    crs
        ``"auto"`` (the AOI's UTM zone) or any projected metric CRS (``"EPSG:3067"``).
    roads
        Which highway classes are drawn and how wide.
    block_px
        Rasterization block size; bounds memory use for large areas.
    """

    gsd_m: float = 1.0
    crs: str = "auto"
    roads: RoadConfig = field(default_factory=RoadConfig)
    block_px: int = 4096


@dataclass(frozen=True)
class MaskSource:
    """Where the area and the features come from; give at least one field.

    ``bbox`` (EPSG:4326 west, south, east, north) or ``aoi`` (a polygon file, any CRS)
    sets the area. Features come from ``osm`` (a local OSM extract or vector file), or
    from ``roads``/``buildings`` vector files, or else from Overpass (online).
    """

    bbox: Sequence[float] | None = None
    aoi: str | Path | None = None
    osm: str | Path | None = None
    roads: str | Path | None = None
    buildings: str | Path | None = None
    overpass: OverpassConfig = field(default_factory=OverpassConfig)

    def describe(self) -> str:
        """A short provenance string for the output's tags."""
        files = [str(Path(p).name) for p in (self.osm, self.roads, self.buildings) if p]
        return "local files: " + ", ".join(files) if files else f"Overpass API ({self.overpass.url})"


@dataclass(frozen=True)
class MaskResult:
    """What :func:`build_mask` wrote."""

    path: Path
    grid: Grid
    n_roads: int
    n_buildings: int


def build_mask(
    output: str | Path,
    source: MaskSource,
    config: MaskConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> MaskResult:
    """Build the two-band mask GeoTIFF for an area.

    Parameters
    ----------
    output
        GeoTIFF path; written atomically (nothing is left under this name on failure).
    source
        Area and feature source, see :class:`MaskSource`.
    config
        Grid and drawing options.
    progress, cancel
        ``progress(done, total, stage)`` and ``cancel() -> bool``, see :mod:`satgen_geo.progress`.

    Raises
    ------
    SatgenError
        With a one-line message for any bad input; see :mod:`satgen_geo.errors`.
    """
    config = config or MaskConfig()
    output = check_writable(output)
    tick = report(progress)
    tick(0, 2, "features")  # downloading or reading OSM can take a while: say so before it starts
    raw, aoi = load_features(source)
    tick(1, 2, "features")
    check_cancel(cancel)
    grid, aoi_metric = mask_grid(aoi, config)
    features = select_features(raw, config.roads).to_crs(grid.crs)
    tick(2, 2, "features")
    if features.is_empty():
        log.warning("no roads and no buildings in the area: the mask will be all zero")
    write_mask(output, grid, prepare_shapes(features), aoi_metric.geometry, source.describe(), config.block_px, progress, cancel)
    log.info("wrote %s: %d×%d px at %.2f m, %s", output, grid.width, grid.height, grid.gsd_m, grid.crs.to_string())
    return MaskResult(output, grid, len(features.roads), len(features.buildings))


def mask_grid(aoi: AOI, config: MaskConfig) -> tuple[Grid, AOI]:
    """The pixel grid a mask of ``aoi`` is drawn on (CRS per ``config.crs``), and the AOI in that CRS."""
    crs = resolve_crs(aoi, config.crs)
    aoi_metric = aoi.to_crs(crs)
    return snap_grid(aoi_metric.bounds, crs, config.gsd_m), aoi_metric


def write_mask(
    output: Path,
    grid: Grid,
    shapes: DrawableShapes,
    aoi_geometry: shapely.Geometry,
    source_text: str,
    block_px: int,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> None:
    """Rasterize ``shapes`` block by block into ``output``; pixels outside the AOI are masked."""
    blocks = iter_blocks(grid, block_px)
    tick = report(progress)
    tags = {"SOURCE": source_text, "ATTRIBUTION": OSM_ATTRIBUTION, "GSD_M": grid.gsd_m, "BANDS": "1=roads 2=buildings, 0/255"}
    with open_for_writing(output, profile(grid, 2), BAND_NAMES, tags) as dst:
        for done, window in enumerate(blocks, start=1):
            check_cancel(cancel)
            dst.write(rasterize_window(shapes, grid, window), window=window)
            dst.write_mask(rasterize_aoi(aoi_geometry, grid, window), window=window)
            tick(done, len(blocks), "rasterize")


def load_features(source: MaskSource, aoi: AOI | None = None) -> tuple[gpd.GeoDataFrame, AOI]:
    """The raw feature frame for a source and the area it covers.

    ``aoi`` overrides the source's own area (used to fetch OSM for an orthophoto's extent).
    """
    aoi = aoi or _requested_aoi(source)
    raw = _read_raw(source, aoi)
    return raw, aoi or _data_aoi(source, raw)


def _requested_aoi(source: MaskSource) -> AOI | None:
    if source.bbox is not None and source.aoi is not None:
        raise AOIError("give either a bbox or an AOI file, not both")
    if source.bbox is not None:
        return aoi_from_bbox(source.bbox)
    if source.aoi is not None:
        return read_aoi(source.aoi)
    if not (source.osm or source.roads or source.buildings):
        raise AOIError("nothing to map: give a bbox, an AOI file, or a local file (--osm, --roads, --buildings)")
    return None


def _read_raw(source: MaskSource, aoi: AOI | None) -> gpd.GeoDataFrame:
    if source.osm and (source.roads or source.buildings):
        raise InputFileError("give either --osm FILE or --roads/--buildings files, not both")
    if source.osm:
        return read_features(source.osm, aoi)
    if source.roads or source.buildings:
        frames = [_only(read_features(p, aoi), column) for p, column in ((source.roads, "highway"), (source.buildings, "building")) if p]
        return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=WGS84)
    return fetch_osm(aoi, source.overpass)


def _only(raw: gpd.GeoDataFrame, column: str) -> gpd.GeoDataFrame:
    """Keep the roads (``highway``) or the buildings (``building``) of a raw frame."""
    return raw[raw[column].notna()] if len(raw) else empty_raw()


def _data_aoi(source: MaskSource, raw: gpd.GeoDataFrame) -> AOI:
    """With no bbox/AOI given: the OSM file's declared extent, else the features' extent."""
    bounds = osm_file_bounds(source.osm) if source.osm else None
    if bounds is None:
        if not len(raw):
            raise AOIError("the input files hold no features and no area was given; pass --bbox or --aoi")
        bounds = tuple(raw.total_bounds)
    return aoi_from_bbox(bounds)
