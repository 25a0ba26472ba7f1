"""Fixtures for the HTTP API tests: a tiny real model and real uvicorn servers on 127.0.0.1.

The model is a tiny ``UNetGenerator(features=8)`` saved as safetensors and loaded with
``load_model``, exactly as ``satgen serve --checkpoint`` would. Overpass is a closed port
(offline) or a fake server on 127.0.0.1 answering a recorded response; no real network is used.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

if any(importlib.util.find_spec(name) is None for name in ("fastapi", "uvicorn", "httpx")):
    collect_ignore_glob = ["test_*.py"]  # the api extra is not installed
else:
    import httpx
    import torch
    from api_helpers import (
        MAX_PIXELS,
        MAX_UPLOAD,
        ROOMY_PIXELS,
        ROOMY_WINDOWS,
        closed_port_url,
        serve,
    )

    from satgen_geo.api import ApiSettings, create_app
    from satgen_geo.model import ModelSpec, UNetGenerator, save_generator
    from satgen_geo.model.loaded import LoadedModel, load_model
    from satgen_geo.osm.fetch import OverpassConfig
    from tests.conftest import torch_threads


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: modest CPU use on a shared machine."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = UNetGenerator(features=8)
    path = save_generator(model, ModelSpec(features=8, name="tiny"), tmp_path_factory.mktemp("api") / "tiny.safetensors")
    return load_model(path, "cpu")


@pytest.fixture(scope="session")
def offline(tmp_path_factory: pytest.TempPathFactory) -> OverpassConfig:
    """Overpass on a closed port: every download fails at once."""
    return OverpassConfig(url=closed_port_url(), cache_dir=tmp_path_factory.mktemp("cache"), use_cache=False,
                          timeout_s=5.0, max_retries=0)


def _app(tiny: LoadedModel, offline: OverpassConfig, **limits: Any) -> Any:
    """An app on the tiny model with one worker, offline Overpass and ``limits``."""
    return create_app(ApiSettings(device="cpu", workers=1, overpass=offline, **limits), model=tiny)


def _client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def api_app(tiny: LoadedModel, offline: OverpassConfig) -> Any:
    """The main test app: small limits, two job slots."""
    return _app(tiny, offline, max_upload_bytes=MAX_UPLOAD, max_output_pixels=MAX_PIXELS, queue_size=2)


@pytest.fixture(scope="module")
def roomy_app(tiny: LoadedModel, offline: OverpassConfig) -> Any:
    """An app for large images: 2048² pixels, a window limit of 1000, one job slot."""
    return _app(tiny, offline, max_upload_bytes=4 * 1024 * 1024, max_output_pixels=ROOMY_PIXELS,
                max_windows=ROOMY_WINDOWS, queue_size=1)


@pytest.fixture(scope="module")
def base_url(api_app: Any) -> Iterator[str]:
    with serve(api_app) as url:
        yield url


@pytest.fixture(scope="module")
def roomy_url(roomy_app: Any) -> Iterator[str]:
    with serve(roomy_app) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    yield from _client(base_url)


@pytest.fixture
def roomy(roomy_url: str) -> Iterator[httpx.Client]:
    yield from _client(roomy_url)
