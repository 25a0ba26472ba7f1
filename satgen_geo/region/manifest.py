"""The region job's manifest: what the job is, and per chunk what was written from which inputs.

``OUTDIR/manifest.json`` (format :data:`FORMAT`) holds

``job``
    The job's identity: the output grid (CRS, transform, size), the chunk plan, the model's
    SHA-256 and every render setting that changes pixels. A rerun into the same folder must
    have the same identity (:func:`check_same_job`): two jobs never mix in one folder.
``chunks``
    One record per finished chunk (:class:`ChunkRecord`): pixel box, halo, bounds in the
    grid's CRS, status (``done`` or ``empty``), the chunk file, the SHA-256 of its bytes, and
    the **input hash** (:func:`input_hash`: the chunk's mask bytes under its halo, the job's
    identity and the chunk's position). A rerun skips a chunk whose input hash is unchanged
    and whose file still has its checksum; anything else is rendered again.

Written atomically (temporary name, then rename), so a crash leaves the previous manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from satgen_geo._atomic import atomic_path
from satgen_geo.errors import ConfigError, InputFileError
from satgen_geo.grid import Grid
from satgen_geo.region.chunks import Chunk, ChunkPlan, box_bounds

log = logging.getLogger(__name__)

FORMAT = "satgen-region/1"
MANIFEST_NAME = "manifest.json"
DONE, EMPTY = "done", "empty"


@dataclass(frozen=True)
class ChunkRecord:
    """What the manifest knows about one chunk."""

    id: str
    box: tuple[int, int, int, int]
    halo: tuple[int, int, int, int]
    bounds: tuple[float, float, float, float]
    status: str
    path: str | None = None
    checksum: str | None = None
    input_hash: str | None = None

    @classmethod
    def of(cls, chunk: Chunk, grid: Grid, status: str, **fields: Any) -> ChunkRecord:
        """A record of ``chunk`` of ``grid``."""
        b, h = chunk.box, chunk.halo
        return cls(
            chunk.id, (b.col_off, b.row_off, b.width, b.height), (h.col_off, h.row_off, h.width, h.height),
            box_bounds(grid, b), status, **fields,
        )


@dataclass(frozen=True)
class Manifest:
    """The job's identity and its chunk records by chunk id."""

    job: Mapping[str, Any]
    chunks: Mapping[str, ChunkRecord] = field(default_factory=dict)

    def with_record(self, record: ChunkRecord) -> Manifest:
        """A copy with ``record`` added or replaced."""
        return Manifest(self.job, {**self.chunks, record.id: record})

    def to_json(self) -> dict[str, Any]:
        """The JSON document (chunks sorted by id)."""
        return {"format": FORMAT, "job": dict(self.job), "chunks": [asdict(self.chunks[k]) for k in sorted(self.chunks)]}


def job_identity(grid: Grid, plan: ChunkPlan, model_sha256: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able identity of a job: grid, chunk plan, model and render settings."""
    return _plain({
        "grid": {"crs": grid.crs.to_wkt(), "transform": list(grid.transform)[:6], "width": grid.width, "height": grid.height},
        "chunks": {"chunk_px": plan.chunk_px, "tile_px": plan.tile_px, "overlap_px": plan.overlap_px},
        "model_sha256": model_sha256,
        "settings": dict(settings),
    })


def job_key(job: Mapping[str, Any]) -> str:
    """A SHA-256 of the job's identity (canonical JSON)."""
    return hashlib.sha256(json.dumps(_plain(job), sort_keys=True).encode()).hexdigest()


def input_hash(key: str, chunk: Chunk, parts: Iterable[bytes]) -> str:
    """The hash of everything a chunk's pixels depend on: job ``key``, position and mask ``parts``."""
    digest = hashlib.sha256(f"{key}:{chunk.id}:{chunk.box}:{chunk.halo}".encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def load_manifest(outdir: Path) -> Manifest | None:
    """The manifest in ``outdir``, or ``None`` when there is none."""
    path = outdir / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT!r}")
        records = [_record(c) for c in doc["chunks"]]
        return Manifest(doc["job"], {r.id: r for r in records})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputFileError(
            f"cannot read the region manifest {path} ({err}); delete it (and the chunks) to start over, "
            "or choose another output folder", param="outdir",
        ) from None


def _record(doc: Mapping[str, Any]) -> ChunkRecord:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    return ChunkRecord(**fields)


def check_same_job(existing: Manifest, job: Mapping[str, Any], outdir: Path) -> None:
    """Refuse to mix jobs: ``outdir``'s manifest must have this job's identity."""
    job = _plain(job)
    if job_key(existing.job) == job_key(job):
        return
    differ = sorted(k for k in set(job) | set(existing.job) if _plain(existing.job.get(k)) != job.get(k))
    detail = ", ".join(_describe(k, existing.job.get(k), job.get(k)) for k in differ)
    raise ConfigError(
        f"{outdir} holds another region job ({detail}); use an empty output folder for this one, "
        "or rerun with the same area, pixel size, chunk size, model and render settings",
        param="outdir",
    )


def save_manifest(outdir: Path, manifest: Manifest) -> Path:
    """Write ``outdir/manifest.json`` atomically."""
    path = outdir / MANIFEST_NAME
    with atomic_path(path, param="outdir") as tmp:
        tmp.write_text(json.dumps(manifest.to_json(), indent=1), encoding="utf-8")
    return path


def _describe(key: str, old: Any, new: Any) -> str:
    if key == "settings" and isinstance(old, Mapping) and isinstance(new, Mapping):
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return "different " + ", ".join(f"{k} ({old.get(k)!r} there, {new.get(k)!r} here)" for k in changed)
    return f"different {key}"


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples → lists, numbers as numbers)."""
    return json.loads(json.dumps(value))
