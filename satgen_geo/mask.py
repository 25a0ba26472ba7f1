"""OSM or vector features → a georeferenced two-band mask GeoTIFF (the ``satgen mask`` job).

The pixel grid is planned from the area alone, before any feature is read or downloaded,
and checked against :attr:`MaskConfig.max_pixels`, so an oversized job stops at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from satgen_geo._atomic import check_distinct, check_writable
from satgen_geo._validate import check_int, check_number
from satgen_geo.errors import AOIError, ConfigError, InputFileError, LimitError
from satgen_geo.geotiff import OSM_ATTRIBUTION, USER_DATA_ATTRIBUTION, open_for_writing, profile
from satgen_geo.grid import AOI, WGS84, Grid, aoi_from_bbox, check_area_of_use, resolve_crs, snap_grid
from satgen_geo.osm.features import select_features
from satgen_geo.osm.fetch import OverpassConfig, check_download_area, fetch_osm
from satgen_geo.osm.files import empty_raw, file_bounds, is_osm_file, read_aoi, read_features
from satgen_geo.osm.roads import RoadConfig
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.rasterize import (
    BAND_NAMES,
    DrawableShapes,
    count_blocks,
    iter_blocks,
    prepare_shapes,
    rasterize_aoi,
    rasterize_window,
)

log = logging.getLogger(__name__)

#: Default :attr:`MaskConfig.max_pixels`: 2 gigapixels (a 2 GB two-band mask before compression).
MAX_PIXELS = 2_000_000_000


@dataclass(frozen=True)
class MaskConfig:
    """How the mask is drawn.

    Parameters
    ----------
    gsd_m
        Pixel size in metres (1.0 matches the training data); above 0.
    crs
        ``"auto"`` (the AOI's UTM zone) or any projected metric CRS (``"EPSG:3067"``).
    roads
        Which highway classes are drawn and how wide.
    block_px
        Rasterization block size, 256 to 16384; bounds memory use for large areas.
    max_pixels
        The largest mask (width × height) built; a larger one is refused before any feature
        is read. Raise it for larger jobs.
    """

    gsd_m: float = 1.0
    crs: str = "auto"
    roads: RoadConfig = field(default_factory=RoadConfig)
    block_px: int = 4096
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        check_number(self.gsd_m, "gsd_m", "pixel size (GSD, metres)", minimum=0.0, open_min=True)
        if not isinstance(self.crs, str) or not self.crs.strip():
            raise ConfigError(f"output CRS must be 'auto' or a CRS name such as EPSG:3067, got {self.crs!r}", param="crs")
        if not isinstance(self.roads, RoadConfig):
            raise ConfigError(f"roads must be a RoadConfig, got {type(self.roads).__name__}", param="road_classes")
        check_int(self.block_px, "block_px", "rasterization block size (px)", minimum=256, maximum=16384)
        check_int(self.max_pixels, "max_pixels", "pixel limit", minimum=1)


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
        files = [str(Path(p).name) for p in self.files().values()]
        return "local files: " + ", ".join(files) if files else f"Overpass API ({self.overpass.url})"

    def files(self) -> dict[str, str | Path]:
        """The local feature files given, by concept (``osm_file``, ``roads_file``, ``buildings_file``)."""
        given = {"osm_file": self.osm, "roads_file": self.roads, "buildings_file": self.buildings}
        return {concept: path for concept, path in given.items() if path}

    def inputs(self) -> dict[str, str | Path]:
        """Every input file (the AOI file and the feature files), by concept."""
        return {**({"aoi_file": self.aoi} if self.aoi else {}), **self.files()}

    def attribution(self) -> str:
        """The ``ATTRIBUTION`` of what is made from this source.

        OpenStreetMap data (Overpass, any file given as the OSM source, any ``.osm``/``.pbf``
        file) needs "© OpenStreetMap contributors"; the user's own road/building layers alone
        carry :data:`~satgen_geo.geotiff.USER_DATA_ATTRIBUTION`.
        """
        files = self.files()
        if not files or self.osm or any(is_osm_file(p) for p in files.values()):
            return OSM_ATTRIBUTION
        return USER_DATA_ATTRIBUTION


@dataclass(frozen=True)
class MaskPlan:
    """What a mask will cover, known before any feature is read (see :func:`plan_mask`)."""

    aoi: AOI
    grid: Grid
    aoi_metric: AOI


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
    LimitError
        When the mask would be larger than ``config.max_pixels``, before any feature is read.
    """
    config = config or MaskConfig()
    output = check_writable(output)
    check_distinct(output, "output", source.inputs())
    plan = plan_mask(source, config)  # size and CRS are checked before any feature is read
    tick = report(progress)
    tick(0, 2, "features")  # downloading or reading OSM can take a while: say so before it starts
    raw, aoi = load_features(source, plan.aoi if plan else None)
    tick(1, 2, "features")
    check_cancel(cancel)
    grid, aoi_metric = (plan.grid, plan.aoi_metric) if plan else mask_grid(aoi, config)
    features = select_features(raw, config.roads).to_crs(grid.crs)
    tick(2, 2, "features")
    if features.is_empty():
        _warn_empty(source)
    shapes = prepare_shapes(features)
    write_mask(output, grid, shapes, aoi_metric.geometry, source.describe(), config.block_px, progress, cancel,
               attribution=source.attribution())
    log.info("wrote %s: %d×%d px at %.2f m, %s", output, grid.width, grid.height, grid.gsd_m, grid.crs.to_string())
    return MaskResult(output, grid, len(features.roads), len(features.buildings))


def plan_mask(source: MaskSource, config: MaskConfig) -> MaskPlan | None:
    """The area and grid of a mask of ``source``, checked, without reading any feature.

    ``None`` when only the features tell the area (a local file that declares no extent).
    Raises like :func:`mask_grid` (a mask over ``config.max_pixels``, an unsuitable CRS) and
    for a bad area.
    """
    aoi = mask_area(source)
    if aoi is None:
        return None
    if not source.files():  # the download is the first work: its limit comes first
        check_download_area(aoi, source.overpass)
    return MaskPlan(aoi, *mask_grid(aoi, config))


def mask_grid(aoi: AOI, config: MaskConfig) -> tuple[Grid, AOI]:
    """The pixel grid a mask of ``aoi`` is drawn on (CRS per ``config.crs``), and the AOI in that CRS.

    Cheap (no raster is allocated). Raises :class:`LimitError` (``param="max_pixels"``) when
    the grid has more than ``config.max_pixels`` pixels, and :class:`CRSError` for a CRS made
    for another part of the world (see :func:`satgen_geo.grid.check_area_of_use`).
    """
    crs = resolve_crs(aoi, config.crs)
    crs_warning = check_area_of_use(aoi, crs)
    aoi_metric = aoi.to_crs(crs)
    grid = snap_grid(aoi_metric.bounds, crs, config.gsd_m)
    pixels = grid.width * grid.height
    if pixels > config.max_pixels:
        raise LimitError(
            f"a mask of this area at {grid.gsd_m:g} m/px would be {grid.width:,} × {grid.height:,} px "
            f"({pixels / 1e6:,.0f} megapixels), over the limit of {config.max_pixels:,} px; "
            "use a larger pixel size or a smaller area, or raise the pixel limit",
            param="max_pixels",
        )
    if crs_warning:
        log.warning("%s", crs_warning)
    return grid, aoi_metric


def mask_area(source: MaskSource) -> AOI | None:
    """The area a mask of ``source`` covers, known without reading the features, or ``None``.

    The bbox or AOI file when given; else the extent the local files declare (an OSM file's
    header, a vector layer's extent). ``None`` when only the features themselves tell it.
    """
    aoi = _requested_aoi(source)
    if aoi is not None or not source.files():
        return aoi
    extents = [file_bounds(path, param=concept) for concept, path in source.files().items()]
    known = [extent for extent in extents if extent is not None]
    if len(known) < len(extents):
        return None
    return aoi_from_bbox((min(e[0] for e in known), min(e[1] for e in known),
                          max(e[2] for e in known), max(e[3] for e in known)))


def _warn_empty(source: MaskSource) -> None:
    """Say loudly that the mask will be empty, and for local files that the area may lie outside them."""
    if source.files():
        names = ", ".join(Path(p).name for p in source.files().values())
        log.warning("no roads and no buildings in the area in %s: the mask will be all zero; "
                    "check that the area lies inside the data's extent", names)
    else:
        log.warning("no roads and no buildings mapped in the area: the mask will be all zero")


def write_mask(
    output: Path,
    grid: Grid,
    shapes: DrawableShapes,
    aoi_geometry: shapely.Geometry,
    source_text: str,
    block_px: int,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    attribution: str = OSM_ATTRIBUTION,
) -> None:
    """Rasterize ``shapes`` block by block into ``output``; pixels outside the AOI are masked.

    ``source_text`` and ``attribution`` become the ``SOURCE`` and ``ATTRIBUTION`` tags.
    """
    total = count_blocks(grid, block_px)
    tick = report(progress)
    tags = {"SOURCE": source_text, "ATTRIBUTION": attribution, "GSD_M": grid.gsd_m, "BANDS": "1=roads 2=buildings, 0/255"}
    with open_for_writing(output, profile(grid, 2), BAND_NAMES, tags) as dst:
        for done, window in enumerate(iter_blocks(grid, block_px), start=1):
            check_cancel(cancel)
            dst.write(rasterize_window(shapes, grid, window), window=window)
            dst.write_mask(rasterize_aoi(aoi_geometry, grid, window), window=window)
            tick(done, total, "rasterize")


def load_features(source: MaskSource, aoi: AOI | None = None) -> tuple[gpd.GeoDataFrame, AOI]:
    """The raw feature frame for a source and the area it covers.

    ``aoi`` overrides the source's own area (used to fetch OSM for an orthophoto's extent);
    without either, the area is the extent of the features read.
    """
    aoi = aoi or _requested_aoi(source)
    raw = _read_raw(source, aoi)
    return raw, aoi or _features_aoi(raw)


def _requested_aoi(source: MaskSource) -> AOI | None:
    if source.bbox is not None and source.aoi is not None:
        raise AOIError("give either a bbox or an AOI file, not both", param="aoi_file")
    if source.bbox is not None:
        return aoi_from_bbox(source.bbox)
    if source.aoi is not None:
        return read_aoi(source.aoi)
    if not source.files():
        raise AOIError("nothing to map: give an area (a bbox or an AOI file) or a local OSM or vector file", param="bbox")
    return None


def _read_raw(source: MaskSource, aoi: AOI | None) -> gpd.GeoDataFrame:
    if source.osm and (source.roads or source.buildings):
        raise InputFileError("give either an OSM file or road/building files, not both", param="osm_file")
    if source.osm:
        return read_features(source.osm, aoi, param="osm_file")
    layers = ((source.roads, "highway", "roads_file"), (source.buildings, "building", "buildings_file"))
    frames = [_only(read_features(path, aoi, param=concept), column) for path, column, concept in layers if path]
    if frames:
        return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=WGS84)
    assert aoi is not None, "_requested_aoi asks for an area when no local file is given"
    return fetch_osm(aoi, source.overpass)


def _only(raw: gpd.GeoDataFrame, column: str) -> gpd.GeoDataFrame:
    """Keep the roads (``highway``) or the buildings (``building``) of a raw frame."""
    return raw[raw[column].notna()] if len(raw) else empty_raw()


def _features_aoi(raw: gpd.GeoDataFrame) -> AOI:
    """The extent of the features read, for files that declare none."""
    if not len(raw):
        raise AOIError("the input files hold no features and no area was given; give a bbox or an AOI file", param="bbox")
    return aoi_from_bbox(tuple(raw.total_bounds))
