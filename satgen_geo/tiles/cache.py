"""The on-disk chunk cache behind the tile server: bounded size, least recently used first out.

Each tile source keeps its chunks in ``ROOT/<source key>/chunks/<chunk id>.tif``, the layout
of a region job's output folder (:mod:`satgen_geo.region.job` writes them, atomically: a
chunk file is whole or absent). :meth:`ChunkCache.ensure` makes a chunk present: a cached
one is touched (its modification time is the LRU clock), a missing one is rendered once
however many threads ask for it at the same time (they wait for the one render), and after
each render the oldest chunks of every source under ``ROOT`` are removed until the cache
fits its size again. A chunk used in the last :data:`GRACE_S` seconds is never removed, so a
tile being read keeps its chunks (the cache may exceed its size briefly under heavy load).
Several processes may share ``ROOT``: a chunk two processes render at once is written twice
with the same pixels, and the last rename wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from satgen_geo._validate import check_int
from satgen_geo.errors import CancelledError
from satgen_geo.progress import CancelFn, check_cancel
from satgen_geo.region.chunks import Chunk
from satgen_geo.region.job import CHUNKS_DIR

log = logging.getLogger(__name__)

#: Chunks used this recently (seconds) are kept whatever the cache's size.
GRACE_S = 60.0
#: How often a thread waiting for another's render checks its own ``cancel()``.
_POLL_S = 0.25


class ChunkCache:
    """Chunk files of one tile source under a shared, size-bounded root.

    Parameters
    ----------
    root
        The cache folder shared by every source (``<cache dir>/tiles`` by default).
    key
        The source's folder name under ``root`` (its identity hash).
    max_bytes
        Total size of every source's chunk files kept under ``root``.
    """

    def __init__(self, root: Path, key: str, max_bytes: int) -> None:
        check_int(max_bytes, "tile_cache", "tile cache size (bytes)")
        self.root, self.folder, self.max_bytes = root, root / key, max_bytes
        self._lock = threading.Lock()
        self._renders: dict[str, Future[None]] = {}

    def path(self, chunk: Chunk) -> Path:
        """Where ``chunk``'s file is (or will be)."""
        return self.folder / CHUNKS_DIR / f"{chunk.id}.tif"

    def cached(self, chunk: Chunk) -> bool:
        """Whether ``chunk``'s file is present."""
        return self.path(chunk).is_file()

    def touch(self, chunk: Chunk) -> None:
        """Mark ``chunk`` as just used (it is evicted last)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path(chunk))

    def ensure(self, chunk: Chunk, render: Callable[[CancelFn | None], None], cancel: CancelFn | None = None) -> bool:
        """Make ``chunk`` present, running ``render(cancel)`` unless it is cached or being rendered.

        Returns whether this call rendered it. A render cancelled by its own caller is taken
        over by the next waiting caller; any other error reaches every waiting caller.
        """
        while True:
            check_cancel(cancel)
            if self.cached(chunk):
                self.touch(chunk)
                return False
            with self._lock:
                pending = self._renders.get(chunk.id)
                if pending is None:
                    pending = self._renders[chunk.id] = Future()
                    owner = True
                else:
                    owner = False
            if owner:
                self._render(chunk, pending, render, cancel)
                return True
            self._wait(pending, cancel)

    def _render(self, chunk: Chunk, pending: Future[None], render: Callable[[CancelFn | None], None],
                cancel: CancelFn | None) -> None:
        try:
            render(cancel)
        except BaseException as err:
            pending.set_exception(err)
            raise
        else:
            pending.set_result(None)
        finally:
            with self._lock:
                del self._renders[chunk.id]
        self.evict()

    @staticmethod
    def _wait(pending: Future[None], cancel: CancelFn | None) -> None:
        """Wait for another caller's render; return to retry if it was cancelled."""
        while True:
            check_cancel(cancel)
            try:
                pending.result(timeout=_POLL_S)
                return
            except FutureTimeout:
                continue
            except CancelledError:
                return

    def evict(self) -> list[Path]:
        """Remove the least recently used chunks under ``root`` until they fit ``max_bytes``; return them."""
        files = []
        for path in self.root.glob(f"*/{CHUNKS_DIR}/*.tif"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        removed = []
        now = time.time()
        for mtime, size, path in sorted(files):
            if total <= self.max_bytes or now - mtime < GRACE_S:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed.append(path)
        if removed:
            log.info("tile cache over %.0f MB: removed %d least recently used chunks", self.max_bytes / 1e6, len(removed))
        return removed
