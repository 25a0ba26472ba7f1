"""The one global setting: where satgen-geo caches downloads (Overpass responses), converted models and calibrations."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$SATGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/satgen-geo``, else ``~/.cache/satgen-geo``."""
    if env := os.environ.get("SATGEN_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "satgen-geo"
