"""A generator ready to run: checkpoint resolution (the shipped default), device choice."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from satgen_geo.errors import CheckpointError, DeviceError
from satgen_geo.model.checkpoint import count_parameters, file_sha256, load_generator
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.spec import ModelSpec

log = logging.getLogger(__name__)

#: The small default model shipped inside the package (see ``satgen_geo/models/README.md``).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "satgen-default.safetensors"


@dataclass(frozen=True)
class LoadedModel:
    """A generator on its device, with its spec and provenance.

    The generator's 4-D weights are stored channels-last (the layout inference runs in),
    so each render's private inference copy (:func:`satgen_geo.network.inference_view`)
    shares them instead of copying them. ``lock`` guards making such copies while other
    threads use the model (the HTTP server). ``sha256`` is the checkpoint file's full
    SHA-256 (64 hex digits).
    """

    generator: UNetGenerator
    spec: ModelSpec
    device: torch.device
    source: str
    sha256: str
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA if available, else Apple MPS, else CPU; or the named device, checked.

    Raises
    ------
    DeviceError
        If the device is unknown or not available on this machine (``param="device"``).
    """
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    kind = name.split(":")[0]
    if kind not in available:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps", param="device")
    if not available[kind]:
        raise DeviceError(f"device {name!r} is not available on this machine; use auto or cpu", param="device")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps", param="device") from None


def load_model(checkpoint: str | Path | None = None, device: str = "auto") -> LoadedModel:
    """Load ``checkpoint`` (any format :func:`load_generator` reads), or the shipped default.

    Raises
    ------
    DeviceError
        If the device is unknown or unavailable.
    CheckpointError
        If the checkpoint is missing, unreadable or not a satgen generator.
    """
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if checkpoint is None and not path.is_file():
        raise CheckpointError(
            f"the default model {path.name} is not installed with this package; give a checkpoint file",
            param="checkpoint",
        )
    target = resolve_device(device)
    generator, spec = load_generator(path, device=target)
    generator = generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    log.info("model %s (%s, %d parameters) on %s", spec.name, path.name, count_parameters(generator), target)
    return LoadedModel(generator, spec, target, "default" if checkpoint is None else str(path), file_sha256(path))
