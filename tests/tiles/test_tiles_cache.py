"""The chunk cache: one render per chunk however many ask, cancelled renders taken over, LRU eviction."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from satgen_geo.errors import CancelledError
from satgen_geo.region.chunks import ChunkPlan
from satgen_geo.tiles.cache import GRACE_S, ChunkCache

PLAN = ChunkPlan(2048, 2048, 512)


def _writer(cache: ChunkCache, calls: list[str], delay: float = 0.2, size: int = 1000):
    def render(chunk, cancel) -> None:
        calls.append(chunk.id)
        time.sleep(delay)
        path = cache.path(chunk)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    return render


def test_concurrent_requests_for_one_chunk_render_it_once(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, "src", 10**9)
    chunk, calls, rendered = PLAN.chunk(0, 0), [], []
    render = _writer(cache, calls)
    threads = [threading.Thread(target=lambda: rendered.append(cache.ensure(chunk, lambda c: render(chunk, c))))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [chunk.id] and sorted(rendered) == [False] * 5 + [True]
    assert cache.cached(chunk)


def test_a_waiter_takes_over_a_render_its_owner_cancelled(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, "src", 10**9)
    chunk, started, calls = PLAN.chunk(1, 1), threading.Event(), []

    def cancelled_render(cancel) -> None:
        started.set()
        time.sleep(0.3)
        raise CancelledError("client went away")

    owner_error = []
    owner = threading.Thread(target=lambda: _catch(owner_error, lambda: cache.ensure(chunk, cancelled_render)))
    owner.start()
    started.wait(5)
    render = _writer(cache, calls, delay=0.0)
    assert cache.ensure(chunk, lambda c: render(chunk, c)) is True  # waited, then rendered itself
    owner.join()
    assert isinstance(owner_error[0], CancelledError) and calls == [chunk.id] and cache.cached(chunk)


def test_other_render_errors_reach_every_waiter(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, "src", 10**9)
    chunk, started = PLAN.chunk(0, 1), threading.Event()

    def failing(cancel) -> None:
        started.set()
        time.sleep(0.3)
        raise OSError("disk full")

    errors: list[BaseException] = []
    owner = threading.Thread(target=lambda: _catch(errors, lambda: cache.ensure(chunk, failing)))
    owner.start()
    started.wait(5)
    with pytest.raises(OSError, match="disk full"):
        cache.ensure(chunk, failing)
    owner.join()
    assert isinstance(errors[0], OSError) and not cache.cached(chunk)


def test_a_waiter_stops_when_its_own_request_is_cancelled(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, "src", 10**9)
    chunk, calls = PLAN.chunk(2, 2), []
    render = _writer(cache, calls, delay=1.0)
    owner = threading.Thread(target=lambda: cache.ensure(chunk, lambda c: render(chunk, c)))
    owner.start()
    time.sleep(0.1)
    began = time.monotonic()
    with pytest.raises(CancelledError):
        cache.ensure(chunk, lambda c: render(chunk, c), cancel=lambda: time.monotonic() - began > 0.2)
    assert time.monotonic() - began < 0.8
    owner.join()


def test_eviction_removes_the_least_recently_used_chunks_of_every_source(tmp_path: Path) -> None:
    sizes = 1000
    caches = [ChunkCache(tmp_path, key, 3 * sizes) for key in ("a", "b")]
    old = time.time() - GRACE_S - 100
    paths = []
    for n, chunk in enumerate(list(PLAN)[:3]):
        for k, cache in enumerate(caches):
            path = cache.path(chunk)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * sizes)
            os.utime(path, (old + 2 * n + k, old + 2 * n + k))
            paths.append(path)
    caches[0].touch(list(PLAN)[0])  # used just now: kept whatever its age before
    removed = caches[1].evict()
    assert removed == [paths[1], paths[2], paths[3]]  # oldest first, across sources, skipping the touched one
    assert [p.exists() for p in paths] == [True, False, False, False, True, True]


def test_recently_used_chunks_are_kept_even_over_the_size(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path, "src", 10)
    render = _writer(cache, [], delay=0.0)
    for chunk in list(PLAN)[:3]:
        cache.ensure(chunk, lambda c, chunk=chunk: render(chunk, c))
    assert all(cache.cached(chunk) for chunk in list(PLAN)[:3])


def _catch(errors: list[BaseException], call) -> None:
    try:
        call()
    except BaseException as err:  # noqa: BLE001 - the test inspects it
        errors.append(err)
