"""Shared test fixtures: paths to the real data and a helper to run the real CLI."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLE_PBF = ROOT / "sample_aoi" / "kotka-suburb.osm.pbf"
SAMPLE_AOI = ROOT / "sample_aoi" / "aoi.geojson"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One cache folder for the session (converted models, calibrations), inherited by CLI subprocesses."""
    before = os.environ.get("SATGEN_CACHE_DIR")
    os.environ["SATGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("satgen-cache"))
    yield
    if before is None:
        os.environ.pop("SATGEN_CACHE_DIR", None)
    else:
        os.environ["SATGEN_CACHE_DIR"] = before


@contextmanager
def small_disk(folder: Path, size: int) -> Iterator[Callable[[], None] | None]:
    """A ``size``-byte filesystem at ``folder`` (tmpfs, as root), or else a ``size``-byte file size limit.

    Yields ``None`` when mounted, else a ``preexec_fn`` that sets the limit in a child process.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    try:
        yield None if mounted else limit
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads (modest CPU use on a shared machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m satgen_geo ARGS`` in a subprocess, as a user would, and capture output."""
    return subprocess.run(
        [sys.executable, "-m", "satgen_geo", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real generator (8 base features, random weights) saved as safetensors."""
    from satgen_geo.model import ModelSpec, UNetGenerator, save_generator

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_generator(UNetGenerator(features=8), ModelSpec(features=8, name="tiny"), path)


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ``../shared`` data folder beside the repository."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests need the shared data folder beside the repo")
    return SHARED
