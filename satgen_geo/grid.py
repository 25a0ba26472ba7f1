"""Where: bounding boxes, areas of interest, output CRS choice and the pixel grid.

Pure functions over shapely geometries, pyproj CRSs and affine transforms; no file or
network IO. A bbox is always ``(west, south, east, north)`` in EPSG:4326.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from satgen_geo.errors import AOIError, CRSError

WGS84 = CRS.from_epsg(4326)
_EQUAL_AREA = CRS.from_epsg(6933)  # WGS 84 / NSIDC EASE-Grid 2.0 Global: cylindrical equal-area
#: How far, in degrees, an area may reach beyond its output CRS's area of use unremarked.
#: Beyond it a warning is logged; an area wholly outside the widened area of use is refused.
CRS_USE_TOLERANCE_DEG = 1.0
#: Densify AOI edges to this many degrees before reprojecting, so that straight edges in
#: one CRS stay faithful in another.
_DENSIFY_DEG = 0.001


@dataclass(frozen=True)
class AOI:
    """An area of interest: a polygonal geometry and the CRS of its coordinates."""

    geometry: BaseGeometry
    crs: CRS

    def to_crs(self, crs: CRS) -> AOI:
        """Return this AOI reprojected to ``crs`` (edges densified first)."""
        crs = CRS.from_user_input(crs)
        if crs == self.crs:
            return self
        geom = self.geometry
        if self.crs.is_geographic:
            geom = shapely.segmentize(geom, _DENSIFY_DEG)
        else:
            extent = max(geom.bounds[2] - geom.bounds[0], geom.bounds[3] - geom.bounds[1])
            geom = shapely.segmentize(geom, max(extent / 200.0, 1e-9))
        transformer = Transformer.from_crs(self.crs, crs, always_xy=True)
        return AOI(shapely.transform(geom, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))), crs)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` in the AOI's own CRS."""
        return tuple(self.geometry.bounds)


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: CRS, affine transform and size in pixels."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def gsd_m(self) -> float:
        """Ground sampling distance (pixel size) in CRS units, metres for a metric CRS."""
        return float(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of the whole grid."""
        left, top = self.transform.c, self.transform.f
        return (left, top - self.height * self.gsd_m, left + self.width * self.gsd_m, top)


def validate_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """Check a ``(west, south, east, north)`` EPSG:4326 bbox and return it as floats.

    Raises
    ------
    AOIError
        If it does not have four finite numbers, is out of range, swapped, or has zero area.
    """
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise AOIError(f"bbox must be four numbers west,south,east,north; got {bbox!r}", param="bbox") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise AOIError(f"bbox must be four finite numbers west,south,east,north; got {bbox!r}", param="bbox")
    west, south, east, north = values
    for name, lon in (("west", west), ("east", east)):
        if not -180.0 <= lon <= 180.0:
            raise AOIError(f"bbox {name}={lon} is outside -180..180; give longitudes in degrees (EPSG:4326)", param="bbox")
    for name, lat in (("south", south), ("north", north)):
        if not -90.0 <= lat <= 90.0:
            raise AOIError(
                f"bbox {name}={lat} is outside -90..90; give west,south,east,north in degrees (EPSG:4326)", param="bbox"
            )
    if west == east or south == north:
        raise AOIError(f"bbox {values} has zero area; west must differ from east and south from north", param="bbox")
    if west > east:
        raise AOIError(f"bbox west={west} is east of east={east}; order is west,south,east,north (swapped?)", param="bbox")
    if south > north:
        raise AOIError(
            f"bbox south={south} is north of north={north}; order is west,south,east,north (swapped?)", param="bbox"
        )
    return values


def aoi_from_bbox(bbox: Sequence[float]) -> AOI:
    """An EPSG:4326 AOI from a validated ``(west, south, east, north)`` bbox."""
    return AOI(box(*validate_bbox(bbox)), WGS84)


def wgs84_bounds(bounds: Sequence[float], crs: CRS) -> tuple[float, float, float, float]:
    """``(minx, miny, maxx, maxy)`` in ``crs`` → the ``(west, south, east, north)`` EPSG:4326 box around them.

    Edges are densified, so the box holds every point of the original one; degenerate
    (zero-width or zero-height) bounds are fine.
    """
    if CRS.from_user_input(crs) == WGS84:
        return float(bounds[0]), float(bounds[1]), float(bounds[2]), float(bounds[3])
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    west, south, east, north = Transformer.from_crs(crs, WGS84, always_xy=True).transform_bounds(
        minx, miny, maxx, maxy, densify_pts=21
    )
    return float(west), float(south), float(east), float(north)


def utm_crs(aoi: AOI) -> CRS:
    """The WGS 84 / UTM zone CRS that contains the AOI's centre."""
    west, south, east, north = aoi.to_crs(WGS84).bounds
    lon, lat = (west + east) / 2.0, (south + north) / 2.0
    infos = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
    if not infos:
        raise CRSError(f"no UTM zone covers lon={lon:.4f}, lat={lat:.4f}; choose a metric output CRS for this area", param="crs")
    return CRS.from_authority(infos[0].auth_name, infos[0].code)


def metric_crs(crs: object) -> CRS:
    """Parse ``crs`` and check that it is projected with metre units.

    Raises
    ------
    CRSError
        For an unparsable, geographic (degree) or non-metre CRS.
    """
    try:
        parsed = CRS.from_user_input(crs)
    except Exception as err:  # pyproj raises its own CRSError with a long message
        raise CRSError(f"cannot parse CRS {crs!r} ({err}); use e.g. EPSG:32635 or auto", param="crs") from None
    if not parsed.is_projected:
        raise CRSError(
            f"output CRS {parsed.to_string()} is geographic (degrees); use a projected metric CRS "
            "such as a UTM zone (EPSG:326xx) or 'auto'", param="crs"
        )
    units = {axis.unit_name for axis in parsed.axis_info}
    if units - {"metre"}:
        raise CRSError(
            f"output CRS {parsed.to_string()} has units {sorted(units)}, not metres; "
            "use a metric CRS such as a UTM zone or 'auto'", param="crs"
        )
    return parsed


def resolve_crs(aoi: AOI, crs: object = "auto") -> CRS:
    """The output CRS: the AOI's UTM zone for ``"auto"``/``None``, else ``crs`` checked metric.

    See :func:`check_area_of_use` for whether it suits the AOI.
    """
    if crs is None or (isinstance(crs, str) and crs.lower() == "auto"):
        return utm_crs(aoi)
    return metric_crs(crs)


def check_area_of_use(aoi: AOI, crs: CRS) -> str | None:
    """Refuse a CRS made for another part of the world; say so when the AOI reaches well beyond it.

    A projected CRS is accurate only in its area of use (a UTM zone: a 6° band of longitude):
    far outside it maps come out rotated and scaled wrongly. An AOI wholly outside the area of
    use widened by :data:`CRS_USE_TOLERANCE_DEG` is a :class:`CRSError`; for one that overlaps
    it but reaches more than that tolerance beyond it, the warning to log is returned.
    ``None`` when the CRS suits the AOI or declares no area of use.
    """
    use = crs.area_of_use
    if use is None:
        return None
    west, south, east, north = aoi.to_crs(WGS84).bounds
    use_west, use_east = use.west, use.east
    if use_east < use_west:  # an area of use across the antimeridian: count longitudes on from use_west
        use_east += 360.0
        if east < use_west:
            west, east = west + 360.0, east + 360.0
    beyond = max(use_west - west, east - use_east, use.south - south, north - use.north, 0.0)
    if beyond <= CRS_USE_TOLERANCE_DEG:
        return None
    tol = CRS_USE_TOLERANCE_DEG
    where = f"lon {west:.2f}..{east:.2f}, lat {south:.2f}..{north:.2f}"
    made_for = f"lon {use.west:g}..{use.east:g}, lat {use.south:g}..{use.north:g}"
    name = f"{crs.to_string()} ({crs.name})"
    if west > use_east + tol or east < use_west - tol or south > use.north + tol or north < use.south - tol:
        raise CRSError(
            f"the output CRS {name} is made for {made_for}, far from the area ({where}); "
            "use 'auto' (the area's UTM zone) or a CRS made for this region", param="crs",
        )
    return (f"the area ({where}) reaches {beyond:.1f}° beyond the area of use of the output CRS {name} ({made_for}); "
            "maps are distorted there: consider a CRS made for the whole area")


def snap_grid(bounds: Sequence[float], crs: CRS, gsd_m: float) -> Grid:
    """The smallest grid aligned to whole multiples of ``gsd_m`` that covers ``bounds``.

    Parameters
    ----------
    bounds
        ``(minx, miny, maxx, maxy)`` in ``crs`` units.
    crs
        The grid's CRS.
    gsd_m
        Pixel size; the grid origin is a whole multiple of it, so grids built for
        overlapping areas share pixel edges.
    """
    if not (math.isfinite(gsd_m) and gsd_m > 0):
        raise AOIError(f"GSD must be a positive number of metres per pixel; got {gsd_m}", param="gsd_m")
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    if not (maxx > minx and maxy > miny):
        raise AOIError(f"area bounds {tuple(bounds)} have zero size; give an area, not a point or line")
    if not all(math.isfinite(v / gsd_m) for v in (minx, miny, maxx, maxy)):
        raise AOIError(f"GSD {gsd_m:g} m is too small to count the pixels of this area; use a larger GSD", param="gsd_m")
    col0, row0 = math.floor(minx / gsd_m), math.ceil(maxy / gsd_m)
    col1, row1 = math.ceil(maxx / gsd_m), math.floor(miny / gsd_m)
    width, height = max(col1 - col0, 1), max(row0 - row1, 1)
    return Grid(CRS.from_user_input(crs), Affine(gsd_m, 0.0, col0 * gsd_m, 0.0, -gsd_m, row0 * gsd_m), width, height)


def area_km2(aoi: AOI) -> float:
    """Area of the AOI in square kilometres, on the WGS 84 ellipsoid.

    Measured in an equal-area projection (EPSG:6933) with densified edges, which stays right
    for areas of any size, a box 360° wide included.
    """
    return float(aoi.to_crs(_EQUAL_AREA).geometry.area) / 1e6
