"""Exceptions raised by satgen-geo.

Every error the toolkit raises on bad input derives from :class:`SatgenError`, and its
message is one line that says what is wrong and how to fix it. Front ends (CLI, QGIS,
HTTP) catch ``SatgenError`` and show ``str(error)``.
"""

from __future__ import annotations


class SatgenError(Exception):
    """Root of all satgen-geo errors."""


class AOIError(SatgenError, ValueError):
    """A bounding box or area of interest is invalid (order, range, zero or too large area)."""


class AreaTooLargeError(AOIError):
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


class CancelledError(SatgenError):
    """The operation was cancelled by the caller's ``cancel`` callable."""


class EvaluationError(SatgenError, ValueError):
    """Evaluation input is unusable (shapes, empty split, too few samples)."""


class MissingDependencyError(SatgenError, ImportError):
    """An optional dependency (an extra such as ``satgen-geo[eval]``) is not installed."""
