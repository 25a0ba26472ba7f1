"""The bounded job queue: deterministic 503s, Retry-After from measured times, cancel on disconnect."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import httpx
import pytest
from api_helpers import (
    big_painting,
    connect,
    json_detail,
    multipart_file,
    painted,
    png,
    post_png,
    raw_request,
    serve,
    wait_until,
)

from satgen_geo.api import ApiSettings, QueueFullError, create_app
from satgen_geo.api.jobs import JobQueue
from satgen_geo.model.loaded import LoadedModel


def _blocker(release: threading.Event) -> Any:
    """A job that holds its slot until ``release`` is set."""
    return lambda cancel: release.wait(60)


# --------------------------------------------------------------------------- the queue on its own


def test_retry_after_grows_with_queue_length() -> None:
    queue, release = JobQueue(workers=1, capacity=3), threading.Event()
    try:
        hints = []
        for _ in range(3):
            queue.submit(_blocker(release))
            hints.append(queue.retry_after())
        assert hints == [1, 2, 3]  # no job finished yet and the oldest has run < 1 s: 1 s per queued job
        with pytest.raises(QueueFullError) as full:
            queue.submit(_blocker(release))
        assert full.value.retry_after == 3
    finally:
        release.set()
        queue.shutdown()


def test_retry_after_follows_measured_job_time() -> None:
    queue, release = JobQueue(workers=1, capacity=2), threading.Event()
    try:
        queue.submit(_blocker(release))
        first = queue.retry_after()
        time.sleep(2.2)  # the running job has taken 2.2 s so far: that is the estimate before any completes
        assert first == 1 and queue.retry_after() == 3
        release.set()
        wait_until(lambda: queue.stats()["running"] == 0, 10, "the job did not finish")
        mean = queue.counts()["mean_seconds"]
        assert queue.counts()["completed"] == 1 and 2.2 <= mean < 4
        release.clear()
        queue.submit(_blocker(release))
        queue.submit(_blocker(release))
        assert queue.retry_after() >= 5  # two queued jobs of the measured ≥ 2.2 s on one worker
    finally:
        release.set()
        queue.shutdown()


# --------------------------------------------------------------------------- over HTTP


def test_concurrent_requests_get_200_or_503(client: httpx.Client, base_url: str, api_app: Any) -> None:
    """One of two slots is held on purpose: exactly one of n requests is admitted, the rest get 503 at once."""
    release = threading.Event()
    holder = api_app.state.queue.submit(_blocker(release))
    data = png(painted(512, 512))
    n = 8

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=120) as c:
            return post_png(c, data, seed=1)

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(post, i) for i in range(n)]
        refused = []
        for future in as_completed(futures, timeout=60):  # the admitted one waits behind the holder
            refused.append(future.result())
            if len(refused) == n - 1:
                break
        release.set()
        responses = [future.result(timeout=120) for future in futures]
    holder.future.result(timeout=10)
    assert [r.status_code for r in refused] == [503] * (n - 1)
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 503}, codes
    assert 200 in codes and 503 in codes, codes
    assert codes.count(200) == 1
    for r in responses:
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 2  # two jobs admitted on one worker, ≥ 1 s each
            assert "busy" in json_detail(r)
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["model_loaded"] is True and body["device"] == "cpu"
    assert body["queue"] == {"running": 0, "waiting": 0, "capacity": 2}


def test_retry_after_over_http_grows_with_running_time(tiny: LoadedModel) -> None:
    app = create_app(ApiSettings(queue_size=2, workers=1), model=tiny)
    release = threading.Event()
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            app.state.queue.submit(_blocker(release))
            app.state.queue.submit(_blocker(release))
            early = post_png(client, png(painted(64, 64)))
            time.sleep(1.6)
            later = post_png(client, png(painted(64, 64)))
            release.set()
    finally:
        release.set()
    assert early.status_code == later.status_code == 503
    assert int(early.headers["retry-after"]) == 2  # 2 jobs × the 1 s floor
    assert int(later.headers["retry-after"]) >= 4  # 2 jobs × the oldest's ≥ 1.6 s so far


def test_disconnected_client_cancels_its_job_and_frees_the_slot(roomy: httpx.Client, roomy_url: str) -> None:
    """A client that drops its connection: its render stops within about a second and the one slot is free."""
    before = roomy.get("/health").json()["jobs"]
    body, content_type = multipart_file(big_painting(2048))  # 29 × 29 = 841 windows at overlap 192: many seconds
    request = raw_request(roomy_url, "/generate?overlap=192&seed=2", {"Content-Type": content_type}, body)
    with connect(roomy_url) as sock:
        sock.sendall(request)
        wait_until(lambda: roomy.get("/health").json()["queue"]["running"] == 1, 30, "the job did not start", 0.05)
        time.sleep(0.3)  # a few batches of windows are computed
    dropped = time.monotonic()
    wait_until(lambda: roomy.get("/health").json()["queue"]["running"] == 0, 10, "the job kept running", 0.05)
    freed_s = time.monotonic() - dropped
    jobs = roomy.get("/health").json()["jobs"]
    assert jobs["cancelled"] == before["cancelled"] + 1  # the render honoured its cancel() and raised
    assert jobs["completed"] == before["completed"] and jobs["failed"] == before["failed"]
    assert freed_s < 1.5, freed_s
    after = post_png(roomy, png(painted(64, 64)))  # one slot only: it is free again
    assert after.status_code == 200, after.text
