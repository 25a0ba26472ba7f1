"""Load generator checkpoints (three formats) and save them as safetensors.

Formats read by :func:`load_generator`, recognised by content, not by file name:

1. the SatGen-CV training checkpoint (``torch.save`` of a dict with
   ``generator_state_dict`` and ``config``; discriminator and optimizer state ignored);
2. a bare generator state dict saved with ``torch.save``;
3. a satgen ``.safetensors`` file whose metadata holds ``{"satgen_spec": <ModelSpec JSON>}``.

``torch.load`` is only ever called with ``weights_only=True``: a pickle that needs any
Python class beyond tensors and plain containers is refused, never executed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import torch
from torch import Tensor, nn

from satgen_geo._atomic import atomic_path
from satgen_geo.errors import CheckpointError
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.spec import ModelSpec

logger = logging.getLogger(__name__)

__all__ = [
    "SATGEN_CHANNELS",
    "SPEC_METADATA_KEY",
    "CheckpointFormat",
    "count_parameters",
    "describe_checkpoint",
    "load_generator",
    "save_generator",
]

CheckpointFormat = Literal["safetensors", "satgen-cv-training", "state-dict"]

#: Metadata key under which :func:`save_generator` stores the :class:`ModelSpec` JSON.
SPEC_METADATA_KEY = "satgen_spec"
#: The mask channels satgen rasterises (order is given per checkpoint by ``ModelSpec.channel_order``).
SATGEN_CHANNELS = frozenset({"roads", "buildings"})
_RGB_CHANNELS = 3

_FIRST_KEY = "initial_down.0.weight"
_LAST_KEY = "final.0.weight"
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_LIST_FIRST = 5
_HINT = "expected a SatGen-CV training checkpoint (.pth), a generator state dict or a satgen .safetensors file"
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+) was not an allowed global")
_SAFETENSORS_MAX_HEADER = 100_000_000


@dataclass(frozen=True)
class _RawCheckpoint:
    """A checkpoint read from disk, before a model is built."""

    state_dict: dict[str, Tensor]
    spec: ModelSpec
    format: CheckpointFormat


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
    CheckpointError
        If the file is missing, unreadable, refused by ``weights_only`` loading, or does
        not match the generator architecture or satgen's 2-channel masks.
    """
    raw = _read_checkpoint(Path(path).expanduser())
    model = _build_model(raw)
    try:
        model = model.to(torch.device(device))
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise CheckpointError(
            f"cannot move the generator to device {str(device)!r} ({_first_line(exc)}); "
            "use device='cpu' or an available device"
        ) from None
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
        raise CheckpointError(f"save_generator expects a UNetGenerator, got {type(model).__name__}")
    if not isinstance(spec, ModelSpec):
        raise CheckpointError(f"save_generator expects a ModelSpec, got {type(spec).__name__}")
    actual = (model.in_channels, model.out_channels, model.features)
    declared = (spec.in_channels, spec.out_channels, spec.features)
    if actual != declared:
        raise CheckpointError(
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
    """Summarise a checkpoint for ``satgen info``.

    Parameters
    ----------
    path
        Checkpoint file in any format :func:`load_generator` reads.

    Returns
    -------
    dict
        The :class:`ModelSpec` fields plus ``path``, ``format``, ``size_bytes``,
        ``parameter_count`` and ``sha256`` (first 12 hex digits of the file's SHA-256).

    Raises
    ------
    CheckpointError
        As :func:`load_generator`.
    """
    path = Path(path).expanduser()
    raw = _read_checkpoint(path)
    model = _build_model(raw)
    info = raw.spec.to_dict()
    info.update(
        path=str(path),
        format=raw.format,
        size_bytes=path.stat().st_size,
        parameter_count=count_parameters(model),
        sha256=file_sha256(path),
    )
    return info


def file_sha256(path: str | os.PathLike[str]) -> str:
    """First 12 hex digits of the file's SHA-256: a short, stable model identifier."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


# --- reading ------------------------------------------------------------------------------


def _read_checkpoint(path: Path) -> _RawCheckpoint:
    """Read ``path`` into a state dict and a spec, whatever its format."""
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}; check the path or download the model first")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}; pass the checkpoint file itself")
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({_first_line(exc)}); check the file permissions"
        ) from None
    if size == 0:
        raise CheckpointError(f"checkpoint file {path} is empty; download or copy it again")
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(head, size):
        return _read_safetensors(path)
    return _read_torch(path, head)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether ``head`` starts like a safetensors file: u64 header length then ``{``."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= min(size - 8, _SAFETENSORS_MAX_HEADER)


def _read_safetensors(path: Path) -> _RawCheckpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            state_dict = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read safetensors checkpoint {path}: corrupt or truncated ({_first_line(exc)}); "
            "download or export it again"
        ) from None
    state_dict = _unwrap_keys(state_dict)
    if SPEC_METADATA_KEY in metadata:
        spec = ModelSpec.from_json(metadata[SPEC_METADATA_KEY])
        return _RawCheckpoint(state_dict, spec, "safetensors")
    logger.warning("%s has no %r metadata; inferring the architecture from tensor shapes", path, SPEC_METADATA_KEY)
    spec = _infer_spec(state_dict, path, {"source": "safetensors file without satgen spec", "file": path.name})
    return _RawCheckpoint(state_dict, spec, "safetensors")


def _read_torch(path: Path, head: bytes) -> _RawCheckpoint:
    obj = _torch_load(path, head)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict; {_HINT}")
    if "generator_state_dict" in obj:
        state_dict = obj["generator_state_dict"]
        if not isinstance(state_dict, Mapping):
            raise CheckpointError(
                f"checkpoint {path}: 'generator_state_dict' is a {type(state_dict).__name__}, not a state dict; "
                "the file is corrupt"
            )
        state_dict = _unwrap_keys(_tensor_dict(state_dict, path))
        config = obj.get("config")
        provenance: dict[str, Any] = {"source": "SatGen-CV training checkpoint", "file": path.name}
        for key in ("epoch", "global_step"):
            if isinstance(obj.get(key), int) and not isinstance(obj.get(key), bool):
                provenance[key] = obj[key]
        spec = _infer_spec(state_dict, path, provenance)
        _check_config(config, spec, path)
        return _RawCheckpoint(state_dict, spec, "satgen-cv-training")
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        state_dict = _unwrap_keys(_tensor_dict(obj, path))
        spec = _infer_spec(state_dict, path, {"source": "generator state dict", "file": path.name})
        return _RawCheckpoint(state_dict, spec, "state-dict")
    keys = ", ".join(repr(k) for k in list(obj)[:_LIST_FIRST])
    raise CheckpointError(
        f"checkpoint {path} is a dict (keys {keys}) with no 'generator_state_dict' and is not a state dict; {_HINT}"
    )


def _torch_load(path: Path, head: bytes) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a CheckpointError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" in message:
            found = _GLOBAL_RE.search(message)
            if found:
                raise CheckpointError(
                    f"checkpoint {path} was refused by weights_only loading: it contains a pickled Python object "
                    f"({found.group(1)}), which satgen never unpickles; "
                    "re-export it as a plain state dict or satgen .safetensors"
                ) from None
            if head[:1] == b"\x80":
                raise CheckpointError(
                    f"checkpoint {path} is a Python pickle that weights_only loading refused "
                    "(not a torch.save checkpoint of plain tensors); "
                    "re-export it with torch.save(state_dict) or as satgen .safetensors"
                ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint or corrupt; {_HINT}") from None
    except EOFError:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated; download or copy it again"
        ) from None
    except Exception as exc:  # torch.load raises many types (RuntimeError, KeyError, ValueError...) on bad bytes
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a PyTorch checkpoint or corrupt "
            f"({type(exc).__name__}: {_first_line(exc)}); {_HINT}"
        ) from None


def _tensor_dict(obj: Mapping[Any, Any], path: Path) -> dict[str, Tensor]:
    """Check that ``obj`` maps string keys to tensors."""
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(
                f"checkpoint {path}: state dict entry {key!r} is a {type(value).__name__}, not a tensor; "
                "the file is corrupt"
            )
    return dict(obj)


def _unwrap_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Strip a ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix shared by all keys."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            logger.info("stripping %r prefix from checkpoint keys", prefix)
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def _infer_spec(state_dict: Mapping[str, Tensor], path: Path, provenance: dict[str, Any]) -> ModelSpec:
    """Infer in/out channels and width from the first and last convolution weights."""
    missing = [k for k in (_FIRST_KEY, _LAST_KEY) if k not in state_dict]
    if missing:
        _raise_key_mismatch(path, missing, [], state_dict)
    first, last = state_dict[_FIRST_KEY], state_dict[_LAST_KEY]
    if first.ndim != 4 or last.ndim != 4 or last.shape[0] != 2 * first.shape[0]:
        raise CheckpointError(
            f"checkpoint {path} is not a SatGen-CV U-Net generator: {_FIRST_KEY!r} has shape {tuple(first.shape)} and "
            f"{_LAST_KEY!r} has shape {tuple(last.shape)}; {_HINT}"
        )
    _check_channels(int(first.shape[1]), int(last.shape[1]))
    provenance = dict(provenance)
    provenance["assumed"] = "channel order, gsd and tiling are not stored in this format; satgen defaults were used"
    return ModelSpec(
        in_channels=int(first.shape[1]),
        out_channels=int(last.shape[1]),
        features=int(first.shape[0]),
        name=path.stem,
        provenance=provenance,
    )


def _check_config(config: Any, spec: ModelSpec, path: Path) -> None:
    """Warn when a training ``config`` disagrees with the tensor shapes (the tensors win)."""
    if not isinstance(config, Mapping):
        if config is not None:
            logger.warning("checkpoint %s: ignoring non-dict 'config' (%s)", path, type(config).__name__)
        return
    for key, actual in (
        ("input_channels", spec.in_channels),
        ("output_channels", spec.out_channels),
        ("generator_features", spec.features),
    ):
        declared = config.get(key)
        if declared is not None and declared != actual:
            logger.warning(
                "checkpoint %s: config[%r] = %r but the weights have %r; using the weights", path, key, declared, actual
            )


# --- building ------------------------------------------------------------------------------


def _build_model(raw: _RawCheckpoint) -> UNetGenerator:
    """Check ``raw`` against satgen's inputs and the architecture, then load it strictly."""
    spec = raw.spec
    _check_channels(spec.in_channels, spec.out_channels)
    if set(spec.channel_order) != SATGEN_CHANNELS:
        raise CheckpointError(
            f"checkpoint expects input channels {list(spec.channel_order)}; satgen masks have roads and buildings; "
            "fix channel_order in the spec"
        )
    model = UNetGenerator(spec.in_channels, spec.out_channels, spec.features)
    expected = model.state_dict()
    state_dict = raw.state_dict
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        _raise_key_mismatch(raw.spec.name, missing, unexpected, state_dict)
    for key, target in expected.items():
        tensor = state_dict[key]
        if tensor.shape != target.shape:
            raise CheckpointError(
                f"checkpoint tensor {key!r} has shape {tuple(tensor.shape)} "
                f"but the generator expects {tuple(target.shape)}; "
                "the checkpoint was trained with a different architecture"
            )
        if not tensor.is_floating_point():
            raise CheckpointError(
                f"checkpoint tensor {key!r} has dtype {tensor.dtype}, expected floating point; the file is corrupt"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"checkpoint tensor {key!r} contains NaN or infinite values; "
                "the checkpoint is corrupt or its training diverged"
            )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # all known causes are caught above; keep the message one line
        raise CheckpointError(f"checkpoint does not fit the generator: {_first_line(exc)}") from None
    return model


def _check_channels(in_channels: int, out_channels: int) -> None:
    """Reject generators that do not map satgen's 2 mask channels to RGB."""
    if in_channels != len(SATGEN_CHANNELS):
        raise CheckpointError(
            f"checkpoint has {in_channels} input channels; satgen masks have 2 (roads, buildings); "
            "use a generator trained on road and building masks"
        )
    if out_channels != _RGB_CHANNELS:
        raise CheckpointError(
            f"checkpoint produces {out_channels} output channels; satgen writes RGB images (3); use an RGB generator"
        )


def _raise_key_mismatch(
    source: Path | str, missing: list[str], unexpected: list[str], state_dict: Mapping[str, Tensor]
) -> NoReturn:
    """Raise a one-line CheckpointError listing the first missing/unexpected keys."""
    parts = []
    if missing:
        parts.append(f"missing keys {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_first(unexpected)}")
    hint = "the file is not a SatGen-CV U-Net generator or was trained with a different architecture"
    if any(k.endswith((".running_mean", ".running_var")) for k in state_dict):
        hint = (
            "it has BatchNorm running statistics: it comes from the early BatchNorm SatGen-CV generator, "
            "which satgen does not support; use an InstanceNorm checkpoint"
        )
    name = source.name if isinstance(source, Path) else source
    raise CheckpointError(f"checkpoint {name} does not match the generator: {'; '.join(parts)}; {hint}")


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_FIRST])
    return f"{shown} (+{len(keys) - _LIST_FIRST} more)" if len(keys) > _LIST_FIRST else shown


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
