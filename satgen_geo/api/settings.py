"""How ``satgen serve`` runs: :class:`ApiSettings`, validated when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from satgen_geo._validate import check_choice, check_int, check_number
from satgen_geo.backends import BACKENDS, PRECISIONS
from satgen_geo.errors import ConfigError
from satgen_geo.mask import MaskSource
from satgen_geo.osm.fetch import OverpassConfig
from satgen_geo.tiles import TileConfig

#: The SatGen-CV mask editor's development servers.
DEFAULT_CORS_ORIGINS = (
    "http://localhost:5173",
    "http://127.0.0.1:5173",
    "http://localhost:3000",
    "http://127.0.0.1:3000",
)


@dataclass(frozen=True)
class ApiSettings:
    """How ``satgen serve`` runs.

    Parameters
    ----------
    checkpoint
        Generator checkpoint; ``None`` is the model shipped with the package.
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    backend, precision
        How every render runs (see :class:`satgen_geo.engine.RenderConfig`); ``auto`` is
        resolved at the first render and kept (:mod:`satgen_geo.precision`).
    cors_origins
        Browser origins allowed to call the API (the mask editor's dev servers by default).
        A request from any other page (an ``Origin`` header not listed here and not the
        server's own) is refused with 403 before its body is read; ``"*"`` allows all.
    max_upload_bytes
        Largest accepted upload (image or GeoTIFF); larger requests get 413 unread.
    max_output_pixels
        Largest image (width × height) rendered; checked from the header / bbox first.
    queue_size
        Jobs running plus waiting; requests beyond it get 503 with ``Retry-After``.
    workers
        Jobs rendered at the same time (threads sharing the one model).
    overpass
        Overpass server and cache for ``POST /generate/bbox``.
    gsd_m
        Default pixel size in metres for ``POST /generate/bbox``.
    max_windows
        The most network windows one request may need (its size and overlap decide the
        count); larger requests get 413 before any work.
    tiles
        The tile source served at ``/tiles`` and ``/map`` (an OSM file, store or vector
        files, or a bbox with Overpass); ``None``: no tiles.
    tile_config
        The tile source's zooms, chunk cache and per-tile limits.
    tile_queue_size
        Tile requests rendering or waiting for chunks at once (a map view asks for a dozen
        tiles together; tiles of one chunk share its render); more get 503.
    """

    checkpoint: str | Path | None = None
    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    max_upload_bytes: int = 20 * 1024 * 1024
    max_output_pixels: int = 4096 * 4096
    queue_size: int = 4
    workers: int = 1
    overpass: OverpassConfig = field(default_factory=OverpassConfig)
    gsd_m: float = 1.0
    max_windows: int = 4096
    tiles: MaskSource | None = None
    tile_config: TileConfig = field(default_factory=TileConfig)
    tile_queue_size: int = 64

    def __post_init__(self) -> None:
        origins = (self.cors_origins,) if isinstance(self.cors_origins, str) else tuple(self.cors_origins)
        object.__setattr__(self, "cors_origins", origins)
        check_choice(self.backend, "backend", "backend", BACKENDS)
        check_choice(self.precision, "precision", "precision", PRECISIONS)
        check_int(self.max_upload_bytes, "max_upload_bytes", "largest upload (bytes)")
        check_int(self.max_output_pixels, "max_pixels", "largest output (pixels)")
        check_int(self.queue_size, "queue_size", "job queue size")
        check_int(self.workers, "workers", "number of workers")
        check_int(self.max_windows, "max_windows", "window limit per job")
        check_int(self.tile_queue_size, "queue_size", "tile request queue size", minimum=self.workers)
        check_number(self.gsd_m, "gsd_m", "default pixel size (m)", open_min=True)
        if self.queue_size < self.workers:
            raise ConfigError(
                f"the job queue size ({self.queue_size}) is smaller than the number of workers ({self.workers}); "
                "the queue holds the running jobs too, so make it at least as large",
                param="queue_size",
            )
