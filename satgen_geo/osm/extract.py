"""Stream a regional OSM extract (``.osm.pbf``) into the spatially indexed store (``satgen osm extract``).

pyosmium reads the file in two passes (multipolygon relations first, then everything) and
hands Python only the ways and assembled areas that carry ``highway`` or ``building``. Node
locations live in an index that, for large files, is a file beside the output rather than
RAM, and features are written to the GeoPackage in batches, so memory does not grow with
the size of the input (``benchmarks/bench_region.py`` measures it).

Geometries follow the rules of GDAL's OSM driver, which the ``--osm FILE`` path uses, so
both paths draw the same mask: a closed way is a polygon when GDAL's ``osmconf.ini`` says so
(``area=yes``, or a key such as ``building``; ``area=no`` wins), nodes missing from a clipped
extract are skipped, a way with fewer than two known nodes is dropped, and polygon rings are
closed on their first known node. Multipolygon relations (buildings with holes) are
assembled by libosmium.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from satgen_geo._atomic import atomic_path, check_writable, scratch_dir
from satgen_geo._validate import check_choice, check_int
from satgen_geo.errors import AOIError, InputFileError, MissingDependencyError, OutputError
from satgen_geo.grid import WGS84, aoi_from_bbox
from satgen_geo.osm.files import read_aoi
from satgen_geo.osm.store import (
    BUILDINGS_LAYER,
    META_EXTENT,
    META_FORMAT,
    META_SOURCE,
    ROADS_LAYER,
    STORE_FORMAT,
)
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report

try:
    import osmium
except ImportError as _missing:
    raise MissingDependencyError(
        f"reading OSM extracts into a store needs the region extra ({_missing.name} is missing): "
        "pip install 'satgen-geo[region]'"
    ) from None

log = logging.getLogger(__name__)

#: GDAL ``osmconf.ini`` ``closed_ways_are_polygons``: keys, and key=value pairs.
_POLYGON_KEYS = frozenset({
    "aeroway", "amenity", "boundary", "building", "craft", "geological", "historic", "landuse",
    "leisure", "military", "natural", "office", "place", "shop", "sport", "tourism",
})
_POLYGON_TAGS = frozenset({("highway", "platform"), ("public_transport", "platform")})
#: Bytes of node index per byte of PBF, with margin (a file index stores 16 bytes per node).
_INDEX_BYTES_PER_PBF_BYTE = 2.5
_OSM_SUFFIXES = (".osm.pbf", ".pbf", ".osm", ".osm.bz2", ".osm.gz")


@dataclass(frozen=True)
class ExtractConfig:
    """How the extract runs.

    Parameters
    ----------
    node_index
        Where node locations are kept: ``"memory"`` (fast, grows with the file), ``"file"``
        (a temporary file beside the output: RAM stays flat) or ``"auto"`` (memory for
        files up to ``memory_index_max_mb``, else file).
    memory_index_max_mb
        Largest input (MB) that ``"auto"`` indexes in memory.
    batch_features
        Features buffered before they are written; bounds memory.
    """

    node_index: str = "auto"
    memory_index_max_mb: int = 64
    batch_features: int = 20_000

    def __post_init__(self) -> None:
        check_choice(self.node_index, "node_index", "node index", ("auto", "memory", "file"))
        check_int(self.memory_index_max_mb, "node_index", "in-memory node index limit (MB)", minimum=0)
        check_int(self.batch_features, "extract_batch", "extract batch size (features)", maximum=10_000_000)

    def uses_file(self, input_bytes: int) -> bool:
        """Whether a file-backed node index is used for an input of ``input_bytes``."""
        return self.node_index == "file" or (
            self.node_index == "auto" and input_bytes > self.memory_index_max_mb * 1024 * 1024
        )


@dataclass(frozen=True)
class ExtractResult:
    """What :func:`extract_store` wrote."""

    path: Path
    n_roads: int
    n_buildings: int
    dropped: int
    input_bytes: int
    seconds: float
    node_index: str
    extent: tuple[float, float, float, float]


@dataclass
class _Batch:
    """Features read but not yet written: ``(osm_id, highway, width, lanes, wkb)`` road rows and
    ``(osm_id, osm_type, building, wkb, is_ring)`` building rows (a ring: a closed way's line)."""

    roads: list[tuple] = field(default_factory=list)
    buildings: list[tuple] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.roads) + len(self.buildings)


def extract_store(
    pbf: str | Path,
    output: str | Path,
    bbox: Sequence[float] | None = None,
    aoi: str | Path | None = None,
    config: ExtractConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> ExtractResult:
    """Convert an OSM extract into the store that :func:`~satgen_geo.osm.store.read_store` queries.

    Parameters
    ----------
    pbf
        ``.osm.pbf`` (or ``.osm``, ``.osm.bz2``) file, any size.
    output
        GeoPackage to write, atomically: nothing appears under this name unless it completes.
    bbox, aoi
        Keep only features intersecting this EPSG:4326 ``(west, south, east, north)`` box or
        the polygons of this vector file (at most one); default everything.
    config
        Node index and batching, see :class:`ExtractConfig`.
    progress, cancel
        ``progress(done, total, "extract")`` in bytes of input read (two passes); ``cancel()``
        is checked between batches.
    """
    config = config or ExtractConfig()
    started = time.perf_counter()
    pbf, output = _check_input(pbf), check_writable(output)
    area = _area(bbox, aoi)
    size = pbf.stat().st_size
    use_file = config.uses_file(size)
    with scratch_dir(output.parent) as tmp, atomic_path(output) as out:
        index = _node_index(tmp, size) if use_file else "flex_mem"
        writer = _StoreWriter(tmp / "store.gpkg", area)  # GDAL wants the .gpkg suffix while writing
        reader = _Reader(pbf, index, writer, config.batch_features, report(progress), cancel)
        reader.run()
        extent = area.bounds if area is not None else (_header_extent(pbf) or writer.features_extent())
        writer.finish({META_FORMAT: STORE_FORMAT, META_SOURCE: pbf.name, META_EXTENT: ",".join(map(repr, extent))})
        os.replace(writer.path, out)
    seconds = time.perf_counter() - started
    log.info(
        "%s → %s: %d roads, %d buildings in %.1f s (%.1f MB/s, %s node index)", pbf.name, output.name,
        writer.n_roads, writer.n_buildings, seconds, size / 1e6 / max(seconds, 1e-9), "file" if use_file else "memory",
    )
    return ExtractResult(
        output, writer.n_roads, writer.n_buildings, writer.dropped + reader.dropped, size, seconds,
        "file" if use_file else "memory", tuple(extent),
    )


def _check_input(pbf: str | Path) -> Path:
    path = Path(pbf).expanduser()
    if not path.is_file():
        raise InputFileError(f"OSM extract {path} does not exist; check the path", param="osm_file")
    if not path.name.lower().endswith(_OSM_SUFFIXES):
        raise InputFileError(
            f"{path.name} is not an OSM extract; give a .osm.pbf, .osm or .osm.bz2 file (e.g. from Geofabrik)",
            param="osm_file",
        )
    return path


def _area(bbox: Sequence[float] | None, aoi: str | Path | None) -> shapely.Geometry | None:
    """The EPSG:4326 area kept, prepared for fast intersection tests, or ``None`` for all."""
    if bbox is not None and aoi is not None:
        raise AOIError("give either a bbox or an AOI file, not both")
    if bbox is not None:
        geometry = aoi_from_bbox(bbox).geometry
    elif aoi is not None:
        geometry = read_aoi(aoi).to_crs(WGS84).geometry
    else:
        return None
    shapely.prepare(geometry)
    return geometry


def _node_index(folder: Path, input_bytes: int) -> str:
    """A file-backed node location index in ``folder``, after checking there is room for it."""
    need = int(input_bytes * _INDEX_BYTES_PER_PBF_BYTE)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OutputError(
            f"the node index for a {input_bytes / 1e6:.0f} MB extract needs about {need / 1e9:.1f} GB of disk "
            f"beside the output, but {folder.parent} has {free / 1e9:.1f} GB free; free space or write elsewhere",
            param="output",
        )
    return f"sparse_file_array,{folder / 'nodes.idx'}"


def _header_extent(pbf: Path) -> tuple[float, float, float, float] | None:
    try:
        box = osmium.io.Reader(str(pbf), osmium.osm.NOTHING).header().box()
    except RuntimeError as err:
        raise InputFileError(f"cannot read {pbf} as OSM data ({err})", param="osm_file") from None
    if not box.valid():
        return None
    return (box.bottom_left.lon, box.bottom_left.lat, box.top_right.lon, box.top_right.lat)


def _is_polygon(tags: osmium.osm.TagList, building: str | None) -> bool:
    """GDAL's rule for a closed way: ``area=yes``/``no`` decides, else a polygon key or tag."""
    area = tags.get("area")
    if area in ("yes", "no"):
        return area == "yes"
    return building is not None or any(tag.k in _POLYGON_KEYS or (tag.k, tag.v) in _POLYGON_TAGS for tag in tags)


class _Reader:
    """One streaming read of the file: ways and relation areas into a :class:`_StoreWriter`."""

    def __init__(
        self, pbf: Path, index: str, writer: _StoreWriter, batch: int, tick: ProgressFn, cancel: CancelFn | None
    ) -> None:
        self.pbf, self.index, self.writer, self.batch_size = pbf, index, writer, batch
        self.tick, self.cancel = tick, cancel
        self.factory = osmium.geom.WKBFactory()
        self.batch = _Batch()
        self.dropped = 0
        self.progress = _ReadProgress(2 * pbf.stat().st_size)

    def run(self) -> None:
        processor = (  # relations are read by the first pass only: the second would just queue them
            osmium.FileProcessor(str(self.pbf), osmium.osm.NODE | osmium.osm.WAY)
            .with_locations(self.index)
            .with_areas(osmium.filter.KeyFilter("building"))
            .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY | osmium.osm.AREA))
            .with_filter(osmium.filter.KeyFilter("highway", "building"))
        )
        try:
            for count, obj in enumerate(processor, start=1):
                if isinstance(obj, osmium.osm.Way):
                    self._way(obj)
                elif isinstance(obj, osmium.osm.Area) and not obj.from_way():  # a closed way's area: see _way
                    self._relation_area(obj)
                if count % 1024 == 0:
                    self._flush_if_full()
        except RuntimeError as err:  # libosmium's read and format errors
            raise InputFileError(f"cannot read {self.pbf} as OSM data ({err})", param="osm_file") from None
        self._flush()

    def _flush_if_full(self) -> None:
        check_cancel(self.cancel)
        self.tick(*self.progress.now(), "extract")
        if len(self.batch) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        check_cancel(self.cancel)
        self.writer.write(self.batch)
        self.batch = _Batch()
        self.tick(*self.progress.now(), "extract")

    def _way(self, way: osmium.osm.Way) -> None:
        nodes = way.nodes
        if len(nodes) < 2:
            return
        tags = way.tags
        building, highway = tags.get("building"), tags.get("highway")
        if nodes[0].ref == nodes[-1].ref and _is_polygon(tags, building):
            wkb = self._line(way, ring=True) if building is not None else None
            if wkb is not None:
                self.batch.buildings.append((way.id, "way", building, wkb, True))
            return
        wkb = self._line(way, ring=False) if highway is not None else None
        if wkb is not None:
            self.batch.roads.append((way.id, highway, tags.get("width"), tags.get("lanes"), wkb))

    def _line(self, way: osmium.osm.Way, ring: bool) -> bytes | str | None:
        """WKB of the way's known nodes (a ring: all but the repeated last, closed on the first)."""
        try:
            return self.factory.create_linestring(way, osmium.geom.use_nodes.ALL)
        except osmium.InvalidLocationError:
            pass
        nodes = list(way.nodes)[:-1] if ring else way.nodes
        coords = [(n.lon, n.lat) for n in nodes if n.location.valid()]
        if len(coords) < 2:
            self.dropped += 1
            return None
        return shapely.to_wkb(shapely.LineString(coords + coords[:1] if ring else coords))

    def _relation_area(self, area: osmium.osm.Area) -> None:
        building = area.tags.get("building")
        if building is None:
            return
        try:
            wkb = self.factory.create_multipolygon(area)
        except RuntimeError:  # an area that could not be assembled (broken or incomplete relation)
            self.dropped += 1
            return
        self.batch.buildings.append((area.orig_id(), "relation", building, wkb, False))


class _ReadProgress:
    """Input bytes read so far (Linux ``/proc/self/io``), for a progress bar over a streaming read."""

    def __init__(self, total: int) -> None:
        self.total, self.start = total, self._read_chars()

    def now(self) -> tuple[int, int]:
        """``(done, total)``; ``done`` stays 0 where the platform does not count bytes read."""
        chars = self._read_chars()
        return min(chars - self.start, self.total), self.total

    @staticmethod
    def _read_chars() -> int:
        try:
            with open("/proc/self/io", encoding="ascii") as io:
                return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))
        except (OSError, StopIteration, ValueError):
            return 0


class _StoreWriter:
    """Appends batches to the two GeoPackage layers; keeps only features intersecting ``area``."""

    def __init__(self, path: Path, area: shapely.Geometry | None) -> None:
        self.path, self.area = path, area
        self.n_roads = self.n_buildings = self.dropped = 0
        self.created: set[str] = set()
        self.bounds = np.array([np.inf, np.inf, -np.inf, -np.inf])

    def write(self, batch: _Batch) -> None:
        """Write one batch (both layers are created by the first call, even when empty)."""
        roads = _frame(batch.roads, ("osm_id", "highway", "width", "lanes"))
        self.n_roads += self._append(ROADS_LAYER, roads, "LineString")
        buildings = _frame([row[:4] for row in batch.buildings], ("osm_id", "osm_type", "building"))
        rings = [row[4] for row in batch.buildings]
        self.n_buildings += self._append(BUILDINGS_LAYER, self._polygons(buildings, rings), "MultiPolygon")

    def _polygons(self, frame: gpd.GeoDataFrame, is_ring: list[bool]) -> gpd.GeoDataFrame:
        """Closed ways (rings) as MultiPolygons; a ring needs 4 points (3-point rings have no area)."""
        rings = np.array(is_ring, dtype=bool)
        keep = ~rings | (shapely.get_num_coordinates(frame.geometry.values) >= 4)
        self.dropped += int((~keep).sum())
        frame, rings = frame[keep], rings[keep]
        if rings.any():
            coords, index = shapely.get_coordinates(frame.geometry.values[rings], return_index=True)
            polygons = shapely.polygons(shapely.linearrings(coords, indices=index))
            geoms = np.array(frame.geometry.values, dtype=object)
            geoms[rings] = shapely.multipolygons(polygons[:, np.newaxis])
            frame = frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index, crs=WGS84))
        return frame

    def _append(self, layer: str, frame: gpd.GeoDataFrame, geometry_type: str) -> int:
        if self.area is not None:
            frame = frame[shapely.intersects(frame.geometry.values, self.area)]
        if len(frame) == 0 and layer in self.created:
            return 0
        if len(frame):
            low, high = frame.total_bounds[:2], frame.total_bounds[2:]
            self.bounds = np.concatenate([np.minimum(self.bounds[:2], low), np.maximum(self.bounds[2:], high)])
        pyogrio.write_dataframe(
            frame, self.path, layer=layer, driver="GPKG", append=layer in self.created,
            geometry_type=geometry_type, promote_to_multi=geometry_type == "MultiPolygon",
        )
        self.created.add(layer)
        return len(frame)

    def features_extent(self) -> tuple[float, float, float, float]:
        """The extent of everything written (for a file without a header box)."""
        if not np.isfinite(self.bounds).all():
            raise AOIError("the OSM extract holds no roads or buildings and no area was given; pass a bbox or AOI")
        return tuple(float(v) for v in self.bounds)  # type: ignore[return-value]

    def finish(self, metadata: dict[str, str]) -> None:
        """Record the store's metadata (the last write: a store without it is not a store)."""
        empty = gpd.GeoDataFrame({"osm_id": np.array([], dtype=np.int64)}, geometry=gpd.GeoSeries(crs=WGS84))
        pyogrio.write_dataframe(empty, self.path, layer=ROADS_LAYER, driver="GPKG", append=True, dataset_metadata=metadata)


def _frame(rows: list[tuple], columns: tuple[str, ...]) -> gpd.GeoDataFrame:
    """A frame of ``rows`` (the columns, then a WKB geometry); ``osm_id`` as int64, text as objects."""
    values = list(zip(*rows, strict=True)) if rows else [()] * (len(columns) + 1)
    data = {name: np.array(column, dtype=np.int64 if name == "osm_id" else object)
            for name, column in zip(columns, values[:-1], strict=True)}
    return gpd.GeoDataFrame(data, geometry=shapely.from_wkb(np.array(values[-1], dtype=object)), crs=WGS84)
