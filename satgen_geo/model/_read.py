"""Read a checkpoint's tensor shapes and spec in any supported format, before a model is built.

Formats, recognised by content, not by file name:

1. the SatGen-CV training checkpoint (``torch.save`` of a dict with
   ``generator_state_dict`` and ``config``; discriminator and optimizer state ignored);
2. a bare generator state dict saved with ``torch.save``;
3. a satgen ``.safetensors`` file whose metadata holds ``{"satgen_spec": <ModelSpec JSON>}``.

A safetensors file is read in two steps: its header (names, shapes, dtypes, spec) first,
its tensor data only when a model is built, so a spec that does not match the tensors is
reported without reading them. ``torch.load`` is only ever called with
``weights_only=True``: a pickle that needs any Python class beyond tensors and plain
containers is refused, never executed; failures are classified by exception type and by
the file's structure, never by the wording of torch's messages.
"""

from __future__ import annotations

import logging
import pickle
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, NoReturn, TypeVar

import torch
from torch import Tensor

from satgen_geo.errors import CheckpointError
from satgen_geo.model._pickles import pickled_globals
from satgen_geo.model.spec import ModelSpec

logger = logging.getLogger(__name__)

CheckpointFormat = Literal["safetensors", "satgen-cv-training", "state-dict"]

#: The mask channels satgen rasterises (order is given per checkpoint by ``ModelSpec.channel_order``).
SATGEN_CHANNELS = frozenset({"roads", "buildings"})
_RGB_CHANNELS = 3
#: Metadata key under which :func:`save_generator` stores the :class:`ModelSpec` JSON.
SPEC_METADATA_KEY = "satgen_spec"
#: Largest accepted safetensors header: a generator's is a few kilobytes plus its spec.
MAX_HEADER_BYTES = 4 << 20
FIRST_KEY = "initial_down.0.weight"
LAST_KEY = "final.0.weight"
HINT = "expected a SatGen-CV training checkpoint (.pth), a generator state dict or a satgen .safetensors file"
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_LIST_FIRST = 5
_SAFETENSORS_MAX_HEADER = 100_000_000  # the format's own limit, used to recognise a file
_ZIP_MAGIC = b"PK\x03\x04"
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64", "F8")

V = TypeVar("V")


class TensorInfo(NamedTuple):
    """What a checkpoint says about one tensor, without its data."""

    shape: tuple[int, ...]
    floating: bool


@dataclass(frozen=True)
class RawCheckpoint:
    """A checkpoint read from disk: its spec and tensor shapes; the data on demand."""

    path: Path
    spec: ModelSpec
    format: CheckpointFormat
    tensors: dict[str, TensorInfo]
    load_tensors: Callable[[], dict[str, Tensor]]


def fail(message: str) -> CheckpointError:
    """A :class:`CheckpointError` about the checkpoint (``param="checkpoint"``)."""
    return CheckpointError(message, param="checkpoint")


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def listed(keys: list[str]) -> str:
    """The first few ``keys``, and how many more."""
    shown = ", ".join(keys[:_LIST_FIRST])
    return f"{shown} (+{len(keys) - _LIST_FIRST} more)" if len(keys) > _LIST_FIRST else shown


def read_checkpoint(path: Path) -> RawCheckpoint:
    """Read ``path``'s spec and tensor shapes, whatever its format."""
    if not path.exists():
        raise fail(f"checkpoint file not found: {path}; check the path or download the model first")
    if not path.is_file():
        raise fail(f"checkpoint path is not a file: {path}; pass the checkpoint file itself")
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError as exc:
        raise fail(f"cannot read checkpoint {path} ({first_line(exc)}); check the file permissions") from None
    if size == 0:
        raise fail(f"checkpoint file {path} is empty; download or copy it again")
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(head, size):
        return _read_safetensors(path, head)
    return _read_torch(path, head)


# --- safetensors ---------------------------------------------------------------------------------


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether ``head`` starts like a safetensors file: u64 header length then ``{``."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header_len: int = struct.unpack("<Q", head[:8])[0]
    return 2 <= header_len <= min(size - 8, _SAFETENSORS_MAX_HEADER)


@contextmanager
def _safetensors_errors(path: Path) -> Iterator[None]:
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise fail(
            f"cannot read safetensors checkpoint {path}: corrupt or truncated ({first_line(exc)}); "
            "download or export it again"
        ) from None


def _read_safetensors(path: Path, head: bytes) -> RawCheckpoint:
    from safetensors import safe_open

    header_len: int = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else 0
    if header_len > MAX_HEADER_BYTES:
        raise fail(
            f"safetensors checkpoint {path} has a {header_len:,}-byte header, over the limit of {MAX_HEADER_BYTES:,} "
            "bytes for a generator; the file is corrupt or not a satgen generator"
        )
    with _safetensors_errors(path), safe_open(str(path), framework="pt", device="cpu") as fh:
        metadata = fh.metadata() or {}
        names = _unwrap_keys({key: key for key in fh.keys()})  # noqa: SIM118 (safe_open is not a dict)
        tensors = {new: _slice_info(fh.get_slice(old)) for new, old in names.items()}

    def load() -> dict[str, Tensor]:
        with _safetensors_errors(path), safe_open(str(path), framework="pt", device="cpu") as fh:
            return {new: fh.get_tensor(old) for new, old in names.items()}

    if SPEC_METADATA_KEY in metadata:
        spec = ModelSpec.from_json(metadata[SPEC_METADATA_KEY])
    else:
        logger.warning("%s has no %r metadata; inferring the architecture from tensor shapes", path, SPEC_METADATA_KEY)
        spec = _infer_spec(tensors, path, {"source": "safetensors file without satgen spec", "file": path.name})
    return RawCheckpoint(path, spec, "safetensors", tensors, load)


def _slice_info(view: Any) -> TensorInfo:
    return TensorInfo(tuple(int(n) for n in view.get_shape()), str(view.get_dtype()).startswith(_FLOAT_DTYPES))


# --- torch.save ----------------------------------------------------------------------------------


def _read_torch(path: Path, head: bytes) -> RawCheckpoint:
    obj = _torch_load(path, head)
    if not isinstance(obj, Mapping):
        raise fail(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict; {HINT}")
    if "generator_state_dict" in obj:
        state_dict = obj["generator_state_dict"]
        if not isinstance(state_dict, Mapping):
            raise fail(
                f"checkpoint {path}: 'generator_state_dict' is a {type(state_dict).__name__}, not a state dict; "
                "the file is corrupt"
            )
        state_dict = _unwrap_keys(_tensor_dict(state_dict, path))
        provenance: dict[str, Any] = {"source": "SatGen-CV training checkpoint", "file": path.name}
        for key in ("epoch", "global_step"):
            if isinstance(obj.get(key), int) and not isinstance(obj.get(key), bool):
                provenance[key] = obj[key]
        return _torch_raw(path, state_dict, "satgen-cv-training", provenance, obj.get("config"))
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        state_dict = _unwrap_keys(_tensor_dict(obj, path))
        return _torch_raw(path, state_dict, "state-dict", {"source": "generator state dict", "file": path.name})
    keys = ", ".join(repr(k) for k in list(obj)[:_LIST_FIRST])
    raise fail(f"checkpoint {path} is a dict (keys {keys}) with no 'generator_state_dict' and is not a state dict; {HINT}")


def _torch_raw(
    path: Path, state_dict: dict[str, Tensor], fmt: CheckpointFormat, provenance: dict[str, Any], config: Any = None
) -> RawCheckpoint:
    tensors = {key: TensorInfo(tuple(t.shape), t.is_floating_point()) for key, t in state_dict.items()}
    spec = _infer_spec(tensors, path, provenance)
    _check_config(config, spec, path)
    return RawCheckpoint(path, spec, fmt, tensors, lambda: state_dict)


def _torch_load(path: Path, head: bytes) -> Any:
    """``torch.load(weights_only=True)`` with every failure classified into a CheckpointError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # the weights_only unpickler refused the file's pickle
        refused = pickled_globals(path)
        if refused is None:
            raise fail(f"cannot read checkpoint {path}: not a PyTorch checkpoint or corrupt; {HINT}") from None
        objects = f" ({', '.join(refused)})" if refused else ""
        raise fail(
            f"checkpoint {path} was refused by weights_only loading: it holds Python objects beyond tensors{objects}, "
            "which satgen never unpickles, for safety; if you trust the file, load it yourself with "
            "torch.load(weights_only=False) and torch.save only the generator's state dict "
            "(satgen export then converts that to .safetensors)"
        ) from None
    except EOFError:
        raise fail(f"cannot read checkpoint {path}: the file is truncated; download or copy it again") from None
    except Exception as exc:  # noqa: BLE001 (torch.load raises many types on bad bytes: RuntimeError, KeyError...)
        if head.startswith(_ZIP_MAGIC) and not zipfile.is_zipfile(path):
            raise fail(
                f"cannot read checkpoint {path}: the file is truncated (its zip directory is missing); "
                "download or copy it again"
            ) from None
        raise fail(
            f"cannot read checkpoint {path}: not a PyTorch checkpoint or corrupt "
            f"({type(exc).__name__}: {first_line(exc)}); {HINT}"
        ) from None


def _tensor_dict(obj: Mapping[Any, Any], path: Path) -> dict[str, Tensor]:
    """Check that ``obj`` maps string keys to tensors whose data the file really holds."""
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise fail(
                f"checkpoint {path}: state dict entry {key!r} is a {type(value).__name__}, not a tensor; "
                "the file is corrupt"
            )
        held = value.untyped_storage().nbytes() // max(value.element_size(), 1)
        if held < value.numel():
            raise fail(
                f"checkpoint {path}: tensor {key!r} has shape {tuple(value.shape)} but the file holds only {held:,} "
                "of its values (a broadcast view); save the real tensors, e.g. torch.save of model.state_dict()"
            )
    return dict(obj)


def _unwrap_keys(entries: dict[str, V]) -> dict[str, V]:
    """Strip a ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix shared by all keys."""
    for prefix in _WRAPPER_PREFIXES:
        if entries and all(k.startswith(prefix) for k in entries):
            logger.info("stripping %r prefix from checkpoint keys", prefix)
            entries = {k[len(prefix) :]: v for k, v in entries.items()}
    return entries


# --- the spec of formats that do not store one -------------------------------------------------------


def _infer_spec(tensors: Mapping[str, TensorInfo], path: Path, provenance: dict[str, Any]) -> ModelSpec:
    """Infer in/out channels and width from the first and last convolution weights."""
    missing = [k for k in (FIRST_KEY, LAST_KEY) if k not in tensors]
    if missing:
        raise_key_mismatch(path, missing, [], tensors)
    first, last = tensors[FIRST_KEY].shape, tensors[LAST_KEY].shape
    if len(first) != 4 or len(last) != 4 or last[0] != 2 * first[0]:
        raise fail(
            f"checkpoint {path} is not a SatGen-CV U-Net generator: {FIRST_KEY!r} has shape {first} and "
            f"{LAST_KEY!r} has shape {last}; {HINT}"
        )
    check_channels(first[1], last[1])
    provenance = dict(provenance)
    provenance["assumed"] = "channel order, gsd and tiling are not stored in this format; satgen defaults were used"
    try:
        return ModelSpec(
            in_channels=first[1], out_channels=last[1], features=first[0], name=path.stem, provenance=provenance
        )
    except CheckpointError as exc:
        raise fail(f"checkpoint {path}: its tensor shapes give an unsupported generator: {exc}") from None


def check_channels(in_channels: int, out_channels: int) -> None:
    """Reject generators that do not map satgen's 2 mask channels to RGB."""
    if in_channels != len(SATGEN_CHANNELS):
        raise fail(
            f"checkpoint has {in_channels} input channels; satgen masks have 2 (roads, buildings); "
            "use a generator trained on road and building masks"
        )
    if out_channels != _RGB_CHANNELS:
        raise fail(
            f"checkpoint produces {out_channels} output channels; satgen writes RGB images (3); use an RGB generator"
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


def raise_key_mismatch(source: Path, missing: list[str], unexpected: list[str], keys: Mapping[str, Any]) -> NoReturn:
    """Raise a one-line CheckpointError listing the first missing/unexpected keys."""
    parts = []
    if missing:
        parts.append(f"missing keys {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {listed(unexpected)}")
    hint = "the file is not a SatGen-CV U-Net generator or was trained with a different architecture"
    if any(k.endswith((".running_mean", ".running_var")) for k in keys):
        hint = (
            "it has BatchNorm running statistics: it comes from the early BatchNorm SatGen-CV generator, "
            "which satgen does not support; use an InstanceNorm checkpoint"
        )
    raise fail(f"checkpoint {source.name} does not match the generator: {'; '.join(parts)}; {hint}")
