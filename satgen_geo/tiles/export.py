"""A tile source's tiles for a zoom range in one file: MBTiles 1.3 (SQLite) or PMTiles v3, resumable.

Tiles are rendered from the highest zoom down, so that the lower zooms read the overviews of
chunks the higher ones put in the chunk cache (below the source's minimum zoom nothing is
rendered on demand). They are staged in an MBTiles file beside the output,
``<output>.partial``, committed every few seconds and whenever the export stops; its
``satgen_export`` metadata row records the export (source key, zooms, format), so a rerun of
the same export skips the tiles staged, and a staging file of another export is refused. At
the end the staging file is renamed to the ``.mbtiles`` output, or the ``.pmtiles`` output is
written from it in tile id order (under a temporary name, then renamed) and it is removed.

A tile's bytes are ``encode_tile(source.tile(z, x, y), fmt)``, what the tile server sends;
tiles outside the area are not stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import write as write_pmtiles

from satgen_geo._atomic import PathLike, atomic_path, check_writable, write_failure
from satgen_geo._validate import check_choice, check_int
from satgen_geo.errors import ConfigError, InputFileError, LimitError, OutputError
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.tiles.encode import MEDIA_TYPES, encode_tile
from satgen_geo.tiles.lattice import TileRead
from satgen_geo.tiles.source import TileSource, TileZoomError
from satgen_geo.tiles.xyz import MAX_ZOOM, MIN_ZOOM, count_tiles, tiles_covering

log = logging.getLogger(__name__)

#: Output file types by suffix.
SUFFIXES = (".mbtiles", ".pmtiles")
#: Most tiles one export may write unless raised.
MAX_TILES = 1_000_000
#: What the staging file adds to the output's name.
STAGING_SUFFIX = ".partial"
#: The staging metadata row that says which export the staged tiles belong to.
IDENTITY_KEY = "satgen_export"
#: Staged tiles are committed (kept for a rerun) at least this often, in seconds.
COMMIT_S = 5.0
_PMTILES_TYPES = {"png": TileType.PNG, "jpg": TileType.JPEG, "webp": TileType.WEBP}
_SCHEMA = (
    "CREATE TABLE metadata (name TEXT, value TEXT)",
    "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)",
    "CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)",
)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_tiles` wrote: ``tiles`` in the file, ``resumed`` of them staged by an earlier run."""

    path: Path
    zooms: tuple[int, int]
    tiles: int
    resumed: int
    file_bytes: int
    chunks: int
    seconds: float


def export_tiles(source: TileSource, output: PathLike, zooms: tuple[int, int], fmt: str = "png",
                 progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                 max_tiles: int = MAX_TILES) -> ExportResult:
    """Write the tiles of ``source`` at zooms ``zooms[0]`` to ``zooms[1]`` to ``output`` (see the module docstring).

    Parameters
    ----------
    source
        The tile source; its chunk cache must hold the area's chunks for zooms below its minimum zoom.
    output
        A ``.mbtiles`` or ``.pmtiles`` file.
    zooms
        Lowest and highest zoom, within 0..24; the highest from the source's minimum to its maximum zoom.
    fmt
        Tile format: ``png``, ``webp`` or ``jpg``.
    progress, cancel
        ``progress(done, total, "tiles")`` (``done`` starts at the tiles staged by an earlier run);
        ``cancel()`` is checked before each tile and keeps the tiles staged so far.
    max_tiles
        Most tiles of the zoom range (over the area's bounds) accepted.

    Raises
    ------
    ConfigError
        For a bad output suffix, format or zoom range, or a staging file of another export.
    LimitError
        Over ``max_tiles``, or when the chunks below the minimum zoom are no longer cached.
    """
    start = time.monotonic()
    path = _check_output(output)
    check_choice(fmt, "tile", "tile format", tuple(MEDIA_TYPES))
    low, high = _check_zooms(source, zooms)
    total = sum(count_tiles(source.bounds, z) for z in range(low, high + 1))
    if total > max_tiles:
        raise LimitError(f"zooms {low}-{high} of the area are {total:,} tiles, over the limit of {max_tiles:,}; export "
                         "fewer zooms or a smaller area, or raise the tile limit", param="max_tiles")
    staging = path.with_name(path.name + STAGING_SUFFIX)
    identity = {"source": source.key, "zooms": [low, high], "format": fmt}
    metadata = _metadata(source, low, high, fmt)
    pmtiles = path.suffix.lower() == ".pmtiles"
    with _staging(staging, identity, metadata) as db:
        resumed = _count(db)
        if resumed:
            log.info("resuming the export from %s: %d tiles already staged", staging, resumed)
        chunks = _stage_tiles(source, db, (low, high), fmt, resumed, total, report(progress), cancel)
        tiles = _count(db)
        if pmtiles:
            _write_pmtiles(db, path, _pmtiles_header(source, low, high, fmt), metadata, cancel)
    if pmtiles:
        staging.unlink()
    else:
        os.replace(staging, path)
    return ExportResult(path, (low, high), tiles, resumed, path.stat().st_size, chunks, time.monotonic() - start)


def _check_output(output: PathLike) -> Path:
    path = Path(output).expanduser()
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"tile export {path.name} must end in .mbtiles or .pmtiles, the file types written",
                          param="output")
    return check_writable(path)


def _check_zooms(source: TileSource, zooms: tuple[int, int]) -> tuple[int, int]:
    low, high = (check_int(z, "zoom", "export zoom", minimum=MIN_ZOOM, maximum=MAX_ZOOM) for z in zooms)
    if low > high:
        raise ConfigError(f"lowest zoom {low} is above highest zoom {high}; give the zooms lowest first", param="zoom")
    if not source.min_zoom <= high <= source.max_zoom:
        raise ConfigError(f"highest zoom {high} is outside this source's zooms {source.min_zoom}-{source.max_zoom}; the "
                          "highest zoom exported renders the chunks the lower ones are made from", param="zoom")
    return low, high


def _metadata(source: TileSource, low: int, high: int, fmt: str) -> dict[str, str]:
    """The MBTiles 1.3 metadata (also the PMTiles metadata) of the export, from the server's TileJSON."""
    doc = source.tilejson("")
    west, south, east, north = source.bounds
    return {
        "name": doc["name"], "format": fmt, "bounds": f"{west:.7f},{south:.7f},{east:.7f},{north:.7f}",
        "center": f"{(west + east) / 2:.7f},{(south + north) / 2:.7f},{_centre_zoom(source, low, high)}",
        "minzoom": str(low), "maxzoom": str(high), "attribution": doc["attribution"], "type": "baselayer",
        "description": doc["description"],
    }


def _centre_zoom(source: TileSource, low: int, high: int) -> int:
    """The zoom a viewer opens at: the native zoom, within the exported ones."""
    return min(max(source.native_zoom, low), high)


@contextmanager
def _staging(path: Path, identity: dict[str, Any], metadata: dict[str, str]) -> Iterator[sqlite3.Connection]:
    """The staging MBTiles, created or checked to hold this export, locked against other processes until closed.

    Whatever ends the block, the tiles staged so far are committed for a rerun.
    """
    db = sqlite3.connect(path, timeout=0)
    try:
        _open(db, path, identity, metadata)
        yield db
        db.commit()
    except sqlite3.Error as err:
        raise OutputError(f"cannot write {path} ({write_failure(path, str(err))})", param="output") from None
    finally:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.commit()
        db.close()


def _open(db: sqlite3.Connection, path: Path, identity: dict[str, Any], metadata: dict[str, str]) -> None:
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")  # the lock taken next is kept until the connection closes
        db.execute("BEGIN EXCLUSIVE")
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'metadata'").fetchone():
            row = db.execute("SELECT value FROM metadata WHERE name = ?", (IDENTITY_KEY,)).fetchone()
            staged = json.loads(row[0]) if row else {}
        else:
            for statement in _SCHEMA:
                db.execute(statement)
            db.executemany("INSERT INTO metadata VALUES (?, ?)", [*metadata.items(), (IDENTITY_KEY, json.dumps(identity))])
            staged = identity
        db.commit()
    except sqlite3.OperationalError as err:
        if "locked" in str(err):
            raise OutputError(f"{path} is being written by another export; wait for it to finish, or choose another "
                              "output", param="output") from None
        raise _unreadable(path, err) from None
    except (sqlite3.DatabaseError, ValueError) as err:
        raise _unreadable(path, err) from None
    if staged != identity:
        differ = ", ".join(key for key in identity if staged.get(key) != identity[key])
        raise ConfigError(f"{path} holds a partial export of other tiles (different {differ}: source means the data, model "
                          "or render settings); delete it to start over, or rerun that export to finish it", param="output")


def _unreadable(path: Path, err: Exception) -> InputFileError:
    return InputFileError(f"cannot read the partial export {path} ({err}); delete it to start over", param="output")


def _count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM tiles").fetchone()[0])


def _stage_tiles(source: TileSource, db: sqlite3.Connection, zooms: tuple[int, int], fmt: str, done: int, total: int,
                 progress: ProgressFn, cancel: CancelFn | None) -> int:
    """Stage the tiles not staged yet (``done`` of ``total`` are), highest zoom first; return the chunks rendered."""
    progress(done, total, "tiles")
    chunks, committed = 0, time.monotonic()
    for z in range(zooms[1], zooms[0] - 1, -1):
        for tile in tiles_covering(source.bounds, z):
            check_cancel(cancel)
            key = (z, tile.x, (1 << z) - 1 - tile.y)  # MBTiles rows count from the bottom (TMS)
            if db.execute("SELECT 1 FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?", key).fetchone():
                continue
            read = source.tile_read(z, tile.x, tile.y)
            if read is not None:
                chunks += _ensure(source, read, cancel)
                db.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (*key, encode_tile(source.read(read), fmt)))
            done += 1
            progress(done, total, "tiles")
            if time.monotonic() - committed > COMMIT_S:
                db.commit()
                committed = time.monotonic()
    return chunks


def _ensure(source: TileSource, read: TileRead, cancel: CancelFn | None) -> int:
    """Render the tile's missing chunks; below the minimum zoom they must still be cached."""
    try:
        return source.ensure(read, cancel)
    except TileZoomError:
        raise LimitError(f"zoom {read.tile.z} tiles are made from the chunks rendered for the higher zooms, but the chunk "
                         f"cache ({source.config.cache_mb} MiB) no longer holds them all; raise the tile cache size to "
                         f"hold the area's chunks, or export zooms {source.min_zoom} and up", param="tile_cache") from None


def _pmtiles_header(source: TileSource, low: int, high: int, fmt: str) -> dict[str, Any]:
    west, south, east, north = (round(v * 1e7) for v in source.bounds)
    return {
        "tile_type": _PMTILES_TYPES[fmt], "tile_compression": Compression.NONE, "min_zoom": low, "max_zoom": high,
        "min_lon_e7": west, "min_lat_e7": south, "max_lon_e7": east, "max_lat_e7": north,
        "center_zoom": _centre_zoom(source, low, high),
        "center_lon_e7": (west + east) // 2, "center_lat_e7": (south + north) // 2,
    }


def _write_pmtiles(db: sqlite3.Connection, path: Path, header: dict[str, Any], metadata: dict[str, str],
                   cancel: CancelFn | None) -> None:
    """Write the staged tiles to ``path`` as PMTiles v3, in tile id order (a clustered archive)."""
    rows = db.execute("SELECT zoom_level, tile_column, tile_row FROM tiles").fetchall()
    order = sorted((zxy_to_tileid(z, x, (1 << z) - 1 - row), z, x, row) for z, x, row in rows)
    with atomic_path(path) as tmp, write_pmtiles(tmp) as writer:
        for tile_id, *key in order:
            check_cancel(cancel)
            data = db.execute("SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                              key).fetchone()[0]
            writer.write_tile(tile_id, data)
        writer.finalize(header, metadata)
