"""The bounded job queue: a few worker threads, a fixed number of slots, nothing waits unbounded.

A request takes a slot (:meth:`JobQueue.submit`) or is refused at once with
:class:`~satgen_geo.api.errors.QueueFullError` (HTTP 503 with ``Retry-After``). Each job is
called with a ``cancel()`` callable that turns true when its client disconnects, its request
is cancelled or the server shuts down; the engine checks it between batches of windows, so
an abandoned job stops within about a second and gives its slot back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from satgen_geo.api.errors import (
    ClientDisconnectedError,
    JobFailedError,
    QueueFullError,
)
from satgen_geo.errors import CancelledError, SatgenError
from satgen_geo.progress import CancelFn

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A job: called on a worker thread with its ``cancel()`` callable.
Job = Callable[[CancelFn], T]

#: ``Retry-After`` bounds in seconds, and the least a job is assumed to take.
RETRY_MIN_S, RETRY_MAX_S, MIN_JOB_S = 1, 600, 1.0
#: How often a waiting request checks whether its client is still connected.
DISCONNECT_POLL_S = 0.25


@dataclass
class Ticket(Generic[T]):
    """A job that holds a slot: its future, and :meth:`abandon` to stop it."""

    future: Future[T]
    abandoned: threading.Event = field(default_factory=threading.Event)

    def abandon(self) -> None:
        """Ask the job to stop (its ``cancel()`` turns true); drop it at once if it has not started."""
        self.abandoned.set()
        self.future.cancel()


class JobQueue:
    """A bounded pool: ``workers`` threads, at most ``capacity`` jobs admitted (running + waiting).

    Nothing here blocks the event loop, and nothing queues beyond ``capacity``: a job
    that finds no free slot raises :class:`QueueFullError` immediately.
    """

    def __init__(self, workers: int, capacity: int) -> None:
        self.workers, self.capacity = workers, capacity
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="satgen-api")
        self._lock = threading.Lock()
        self._admitted = 0
        self._started: dict[int, float] = {}  # worker thread id → when its job started
        self._mean_s: float | None = None
        self._counts = {"completed": 0, "cancelled": 0, "failed": 0}
        self.closing = threading.Event()

    def stats(self) -> dict[str, int]:
        """``running``, ``waiting`` and ``capacity`` right now."""
        with self._lock:
            running = len(self._started)
            return {"running": running, "waiting": self._admitted - running, "capacity": self.capacity}

    def counts(self) -> dict[str, Any]:
        """Jobs ``completed``, ``cancelled`` and ``failed`` so far, and ``mean_seconds`` of the completed ones."""
        with self._lock:
            mean = None if self._mean_s is None else round(self._mean_s, 3)
            return {**self._counts, "mean_seconds": mean}

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained: job time × admitted jobs per worker.

        The job time is the measured mean of completed jobs or, before any has completed,
        how long the oldest running job has run so far; at least :data:`MIN_JOB_S`. The
        result lies between :data:`RETRY_MIN_S` and :data:`RETRY_MAX_S`.
        """
        with self._lock:
            now = time.monotonic()
            longest = max((now - started for started in self._started.values()), default=0.0)
            job_s = max(self._mean_s if self._mean_s is not None else longest, MIN_JOB_S)
            rounds = max(self._admitted, 1) / self.workers
        return int(min(max(math.ceil(job_s * rounds), RETRY_MIN_S), RETRY_MAX_S))

    def submit(self, job: Job[T]) -> Ticket[T]:
        """Admit ``job`` and start it on a worker when one is free; :class:`QueueFullError` if no slot is free."""
        with self._lock:
            full = self._admitted >= self.capacity or self.closing.is_set()
            if not full:
                self._admitted += 1
        if full:
            raise QueueFullError(self.retry_after())
        abandoned = threading.Event()

        def cancel() -> bool:
            return abandoned.is_set() or self.closing.is_set()

        try:
            future = self._pool.submit(self._call, job, cancel)
        except RuntimeError:  # the pool is shut down
            self._release(None)
            raise QueueFullError(self.retry_after()) from None
        future.add_done_callback(self._release)
        return Ticket(future, abandoned)

    async def run(self, job: Job[T], disconnected: Callable[[], Awaitable[bool]] | None = None) -> T:
        """Run ``job`` on the pool and await its result without blocking the event loop.

        While it waits or runs, ``disconnected()`` is polled every :data:`DISCONNECT_POLL_S`;
        when it turns true the job is abandoned and :class:`ClientDisconnectedError` raised.
        A cancelled request abandons its job too.
        """
        ticket = self.submit(job)
        waiter = asyncio.wrap_future(ticket.future)
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=DISCONNECT_POLL_S)
                if done:
                    return waiter.result()
                if disconnected is not None and await disconnected():
                    ticket.abandon()
                    raise ClientDisconnectedError("the client closed the connection; its job was cancelled")
        except asyncio.CancelledError:
            ticket.abandon()
            raise
        finally:
            waiter.cancel()  # a no-op when done; otherwise nobody waits for the abandoned job's outcome

    def _call(self, job: Job[T], cancel: CancelFn) -> T:
        me = threading.get_ident()
        with self._lock:
            self._started[me] = started = time.monotonic()
        outcome = "failed"
        try:
            result = job(cancel)
            outcome = "completed"
            return result
        except CancelledError:
            outcome = "cancelled"
            raise
        except SatgenError:
            raise
        except Exception as err:
            log.exception("generation job failed")
            first = (str(err).splitlines() or [""])[0][:200]
            raise JobFailedError(f"generation failed ({type(err).__name__}: {first}); see the server log") from err
        finally:
            self._finished(me, outcome, time.monotonic() - started)

    def _finished(self, worker: int, outcome: str, seconds: float) -> None:
        with self._lock:
            del self._started[worker]
            self._counts[outcome] += 1
            if outcome == "completed":
                self._mean_s = seconds if self._mean_s is None else 0.7 * self._mean_s + 0.3 * seconds

    def _release(self, future: Future[Any] | None) -> None:
        with self._lock:
            self._admitted -= 1
            if future is not None and future.cancelled():  # abandoned before it started
                self._counts["cancelled"] += 1

    def shutdown(self) -> None:
        """Cancel waiting jobs, ask running ones to stop, wait for the threads."""
        self.closing.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
