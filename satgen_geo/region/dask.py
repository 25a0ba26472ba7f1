"""Run a region job's chunk tasks on Dask distributed: a local cluster, or an existing scheduler.

The only module of satgen-geo that imports Dask. One task per chunk
(:func:`satgen_geo.region.job.run_chunk`); each worker loads the model once, when it starts
(:class:`ModelPlugin`, a ``WorkerPlugin``: workers that join later or restart after a crash
load it too). A task whose worker dies is rescheduled by the scheduler (up to Dask's
``distributed.scheduler.allowed-failures``, 3 by default); a task that raises is retried
``RegionConfig.retries`` times.

A local cluster has ``workers`` processes of one thread each, and torch in each worker uses
``cores // workers`` threads (or ``RegionConfig.torch_threads``) so the workers do not
oversubscribe the machine. With a scheduler address, the cluster is whatever runs there
(``dask scheduler`` + ``dask worker``, dask-jobqueue, one worker per GPU with
``--resources GPU=1``, ...); the checkpoint must be readable at the same path on every worker.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from distributed import Client, LocalCluster, Worker, WorkerPlugin, as_completed, get_worker

from satgen_geo.errors import CheckpointError, ConfigError
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.progress import CancelFn, check_cancel
from satgen_geo.region.job import ChunkOutcome, ChunkTask, run_chunk
from satgen_geo.region.run import RegionConfig

log = logging.getLogger(__name__)

#: Models loaded by :class:`ModelPlugin`, by worker address (in each worker process).
_MODELS: dict[str, LoadedModel] = {}


class ModelPlugin(WorkerPlugin):
    """Loads the job's model once per worker, on ``device``, with ``threads`` torch threads."""

    name = "satgen-model"

    def __init__(self, checkpoint: str | None, sha256: str, device: str, threads: int | None) -> None:
        self.checkpoint, self.sha256, self.device, self.threads = checkpoint, sha256, device, threads

    def setup(self, worker: Worker) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        model = load_model(self.checkpoint, self.device)
        if model.sha256 != self.sha256:
            raise CheckpointError(
                f"worker {worker.address} reads a different checkpoint at {self.checkpoint or 'the default model'} "
                "than the job; every worker must see the same file"
            )
        _MODELS[worker.address] = model
        log.info("worker %s: model %s on %s, %d torch threads", worker.address, model.spec.name,
                 model.device, torch.get_num_threads())

    def teardown(self, worker: Worker) -> None:
        _MODELS.pop(worker.address, None)


def _run_on_worker(task: ChunkTask) -> ChunkOutcome:
    """The Dask task: one chunk with this worker's model."""
    return run_chunk(task, _MODELS[get_worker().address])


def run_on_dask(
    tasks: Sequence[ChunkTask], model: LoadedModel, config: RegionConfig, cancel: CancelFn | None,
    on_cluster: Callable[[str | None], None] | None = None,
) -> Iterator[ChunkOutcome]:
    """Run ``tasks`` on the cluster ``config`` names; yield outcomes as chunks finish."""
    with _client(config) as client:
        if on_cluster is not None:
            on_cluster(client.dashboard_link if config.scheduler is None and config.dashboard else None)
        threads = config.torch_threads or (_local_threads(config.workers) if config.scheduler is None else None)
        checkpoint = None if model.source == "default" else model.source
        client.register_plugin(ModelPlugin(checkpoint, model.sha256, config.device, threads))
        run = uuid.uuid4().hex[:8]
        pending = {
            client.submit(_run_on_worker, task, key=f"satgen-chunk-{task.chunk.id}-{run}", retries=config.retries,
                          resources=dict(config.resources) or None, pure=False)
            for task in tasks
        }
        try:
            for future in as_completed(list(pending), loop=client.loop):
                check_cancel(cancel)
                outcome = future.result()
                pending.discard(future)
                future.release()  # the worker may drop it: a later worker death does not recompute it
                yield outcome
        finally:
            client.cancel(list(pending))


def _local_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


@contextmanager
def _client(config: RegionConfig) -> Iterator[Client]:
    """A client of the scheduler at ``config.scheduler``, or of a new local cluster."""
    if config.scheduler is not None:
        try:
            client = Client(config.scheduler, timeout=f"{config.connect_timeout_s}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise ConfigError(
                f"no Dask scheduler answers at {config.scheduler} within {config.connect_timeout_s:g} s "
                f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); check the address and that "
                "'dask scheduler' runs there, or use local workers",
                param="scheduler",
            ) from None
        with client:
            yield client
        return
    cluster = LocalCluster(
        n_workers=config.workers, threads_per_worker=1, processes=True, silence_logs=logging.ERROR,
        dashboard_address=":0" if config.dashboard else None, resources=dict(config.resources) or None,
    )
    with cluster, Client(cluster, set_as_default=False) as client:
        log.info("local Dask cluster: %d workers, dashboard %s", config.workers, client.dashboard_link)
        yield client
