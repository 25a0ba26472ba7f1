"""Exceptions raised by satgen-geo.

Every error the toolkit raises on bad input derives from :class:`SatgenError`, and its
message is one line that says what is wrong and how to fix it, in terms of concepts (the
area, the pixel size, the window overlap), never of one front end's flags. When the error
is about one setting, ``param`` names it as a concept (``"gsd_m"``, ``"overlap_px"``,
``"osm_file"``, …: see :data:`PARAMS`); each front end renders it its own way (a CLI flag,
a QGIS parameter label, a JSON field).
"""

from __future__ import annotations

#: Every ``param`` a core error may carry, with what it means. Front ends map these names
#: to their own controls; a test checks that each front end knows every one it exposes.
PARAMS: dict[str, str] = {
    "bbox": "the area as west, south, east, north in EPSG:4326 degrees",
    "aoi_file": "the area as a polygon file",
    "osm_file": "a local OSM extract or vector file",
    "roads_file": "a vector file of road lines",
    "buildings_file": "a vector file of building polygons",
    "gsd_m": "the pixel size in metres",
    "crs": "the output coordinate reference system",
    "max_area_km2": "the largest area downloaded from Overpass",
    "max_pixels": "the largest raster built or rendered, in pixels",
    "overpass_url": "the Overpass API address",
    "mask": "the input mask GeoTIFF",
    "output": "the output file",
    "mask_output": "the extra mask output file",
    "checkpoint": "the generator checkpoint",
    "device": "the compute device",
    "precision": "the numeric precision",
    "seed": "the random seed",
    "overlap_px": "the window overlap in pixels",
    "batch_size": "the windows per network call",
    "max_windows": "the most windows one render may compute",
    "strip_px": "the widest strip rendered at once",
    "region": "the part of the mask to render",
    "upload": "the uploaded file",
}


class SatgenError(Exception):
    """Root of all satgen-geo errors.

    Parameters
    ----------
    message
        One line: what is wrong and how to fix it, naming concepts rather than flags.
    param
        The setting the error is about, a key of :data:`PARAMS`, or ``None``.
    """

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ConfigError(SatgenError, ValueError):
    """A setting is out of its accepted range or of the wrong type."""


class LimitError(ConfigError):
    """The requested work (pixels, windows, batch) is over a configured limit; the message names the limit."""


class AOIError(SatgenError, ValueError):
    """A bounding box or area of interest is invalid (order, range, zero or too large area)."""


class AreaTooLargeError(AOIError, LimitError):
    """The requested area exceeds a configured limit."""


class CRSError(SatgenError, ValueError):
    """A coordinate reference system is missing or unusable for the requested operation."""


class InputFileError(SatgenError, ValueError):
    """An input file is missing, corrupt, or in an unsupported format."""


class OSMDownloadError(SatgenError):
    """OpenStreetMap data could not be downloaded (offline, server error, rate limit)."""


class OutputError(SatgenError, OSError):
    """An output file cannot be written."""


class CheckpointError(SatgenError, ValueError):
    """A model checkpoint is missing, unreadable or does not match the architecture."""


class DeviceError(SatgenError, RuntimeError):
    """The requested compute device is unknown or not available on this machine."""


class CancelledError(SatgenError):
    """The operation was cancelled by the caller's ``cancel`` callable."""


class EvaluationError(SatgenError, ValueError):
    """Evaluation input is unusable (shapes, empty split, too few samples)."""


class MissingDependencyError(SatgenError, ImportError):
    """An optional dependency (an extra such as ``satgen-geo[eval]``) is not installed."""
