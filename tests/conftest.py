"""Shared test fixtures: paths to the real data and a helper to run the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLE_PBF = ROOT / "sample_aoi" / "kotka-suburb.osm.pbf"
SAMPLE_AOI = ROOT / "sample_aoi" / "aoi.geojson"
FIXTURES = Path(__file__).parent / "fixtures"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m satgen_geo ARGS`` in a subprocess, as a user would, and capture output."""
    return subprocess.run(
        [sys.executable, "-m", "satgen_geo", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ``../shared`` data folder beside the repository."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests need the shared data folder beside the repo")
    return SHARED
