"""Load generator checkpoints (three formats, see :mod:`satgen_geo.model._read`), save safetensors.

Every check that can be made from a checkpoint's spec and tensor shapes is made before
any weight memory is allocated: the spec's values are bounded, and its architecture is
compared key by key with the tensors' shapes (computed for the spec on PyTorch's ``meta``
device). Only then is the tensor data read and adopted by the model, so loading needs
memory for the weights once, never for what a spec merely claims.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from satgen_geo._atomic import atomic_path
from satgen_geo.errors import DeviceError
from satgen_geo.model._read import (
    SATGEN_CHANNELS,
    SPEC_METADATA_KEY,
    CheckpointFormat,
    RawCheckpoint,
    check_channels,
    fail,
    first_line,
    raise_key_mismatch,
    read_checkpoint,
)
from satgen_geo.model.generator import UNetGenerator, state_shapes
from satgen_geo.model.spec import ModelSpec

logger = logging.getLogger(__name__)

__all__ = [
    "SATGEN_CHANNELS",
    "SPEC_METADATA_KEY",
    "CheckpointFormat",
    "count_parameters",
    "describe_checkpoint",
    "file_sha256",
    "load_generator",
    "save_generator",
]

def count_parameters(model: nn.Module) -> int:
    """Return the number of parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[UNetGenerator, ModelSpec]:
    """Load a generator checkpoint in any supported format.

    Parameters
    ----------
    path
        Checkpoint file: SatGen-CV training ``.pth``, bare state dict, or satgen
        ``.safetensors``.
    device
        Device to put the model on.

    Returns
    -------
    tuple[UNetGenerator, ModelSpec]
        The model, in eval mode with inference dropout off (see
        :meth:`UNetGenerator.set_mc_dropout`), and its spec. For the two ``torch.save``
        formats the spec is inferred: tensor shapes give the architecture, the rest are
        the satgen defaults.

    Raises
    ------
    DeviceError
        If ``device`` is unknown or the model cannot be moved there (``param="device"``).
    CheckpointError
        If the file is missing, unreadable, refused by ``weights_only`` loading, its spec
        is out of bounds, or it does not match the generator architecture or satgen's
        2-channel masks (``param="checkpoint"``).
    """
    target = _device(device)
    raw = read_checkpoint(Path(path).expanduser())
    _check_tensors(raw)
    model = _build_model(raw)
    try:
        model = model.to(target)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise _device_error(device, exc) from None
    model.set_mc_dropout(False)
    logger.info("loaded %s checkpoint %s (%d parameters)", raw.format, path, count_parameters(model))
    return model, raw.spec


def save_generator(model: UNetGenerator, spec: ModelSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` and ``spec`` to a ``.safetensors`` file, atomically.

    The tensors go to a temporary file in the target directory which then replaces
    ``path``, so readers never see a half-written checkpoint.

    Parameters
    ----------
    model
        The generator to save.
    spec
        Its description; stored as JSON in the file metadata under ``"satgen_spec"``.
    path
        Target file.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    CheckpointError
        If ``spec`` does not describe ``model``.
    OutputError
        If the file cannot be written.
    """
    from safetensors.torch import save_file

    if not isinstance(model, UNetGenerator):
        raise fail(f"save_generator expects a UNetGenerator, got {type(model).__name__}")
    if not isinstance(spec, ModelSpec):
        raise fail(f"save_generator expects a ModelSpec, got {type(spec).__name__}")
    actual = (model.in_channels, model.out_channels, model.features)
    declared = (spec.in_channels, spec.out_channels, spec.features)
    if actual != declared:
        raise fail(
            f"spec describes (in_channels, out_channels, features) = {declared} but the model has {actual}; "
            "build the spec from the model"
        )
    path = Path(path).expanduser()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {SPEC_METADATA_KEY: spec.to_json(), "format": "pt"}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    logger.info("saved generator checkpoint %s", path)
    return path


def describe_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarise a checkpoint for ``satgen info``, without building the model.

    The spec and tensor shapes are checked as :func:`load_generator` checks them and the
    parameters are counted from the shapes; a safetensors file's tensor data is not read.

    Parameters
    ----------
    path
        Checkpoint file in any format :func:`load_generator` reads.

    Returns
    -------
    dict
        The :class:`ModelSpec` fields plus ``path``, ``format``, ``size_bytes``,
        ``parameter_count`` and ``sha256`` (the file's full SHA-256, 64 hex digits).

    Raises
    ------
    CheckpointError
        As :func:`load_generator`, except for the checks that need the tensor values.
    """
    path = Path(path).expanduser()
    raw = read_checkpoint(path)
    _check_tensors(raw)
    info = raw.spec.to_dict()
    info.update(
        path=str(path),
        format=raw.format,
        size_bytes=path.stat().st_size,
        parameter_count=sum(math.prod(tensor.shape) for tensor in raw.tensors.values()),
        sha256=file_sha256(path),
    )
    return info


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's SHA-256 as 64 hex digits: the model's identifier in outputs and reports."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- checking and building -----------------------------------------------------------------------


def _check_tensors(raw: RawCheckpoint) -> None:
    """Check the spec against satgen's inputs and the tensors' names, shapes and dtypes; no data is read."""
    spec = raw.spec
    check_channels(spec.in_channels, spec.out_channels)
    if set(spec.channel_order) != SATGEN_CHANNELS:
        raise fail(
            f"checkpoint expects input channels {list(spec.channel_order)}; satgen masks have roads and buildings; "
            "fix channel_order in the spec"
        )
    expected = state_shapes(spec.in_channels, spec.out_channels, spec.features)
    missing = [k for k in expected if k not in raw.tensors]
    unexpected = [k for k in raw.tensors if k not in expected]
    if missing or unexpected:
        raise_key_mismatch(raw.path, missing, unexpected, raw.tensors)
    for key, shape in expected.items():
        tensor = raw.tensors[key]
        if tensor.shape != shape:
            raise fail(
                f"checkpoint tensor {key!r} has shape {tensor.shape} but the generator expects {shape} "
                f"(for the spec's {spec.features} features); the checkpoint was trained with a different "
                "architecture, or its spec does not describe its tensors"
            )
        if not tensor.floating:
            raise fail(f"checkpoint tensor {key!r} is not floating point; the file is corrupt")


def _build_model(raw: RawCheckpoint) -> UNetGenerator:
    """Read the checked tensors and make them the parameters of a model built without weights."""
    state_dict: dict[str, Tensor] = {}
    for key, tensor in raw.load_tensors().items():
        if not bool(torch.isfinite(tensor).all()):
            raise fail(
                f"checkpoint tensor {key!r} contains NaN or infinite values; "
                "the checkpoint is corrupt or its training diverged"
            )
        state_dict[key] = tensor.to(torch.float32).contiguous()
    spec = raw.spec
    with torch.device("meta"):
        model = UNetGenerator(spec.in_channels, spec.out_channels, spec.features)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:  # all known causes are caught above; keep the message one line
        raise fail(f"checkpoint does not fit the generator: {first_line(exc)}") from None
    return model


def _device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _device_error(device, exc) from None


def _device_error(device: str | torch.device, exc: BaseException) -> DeviceError:
    return DeviceError(
        f"cannot move the generator to device {str(device)!r} ({first_line(exc)}); use the cpu device or an available one",
        param="device",
    )
