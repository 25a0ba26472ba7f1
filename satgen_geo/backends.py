"""Inference backends: one generator run by torch, OpenVINO or ONNX Runtime at a given precision.

A *runner* takes a batch of network inputs (float32 ``(N, C, H, W)`` in [-1, 1]) and, when
dropout is on, the three seeded dropout masks of
:meth:`~satgen_geo.model.generator.UNetGenerator.dropout_masks`, and returns the network's
float32 output as a NumPy array. The masks are drawn outside the network and are inputs of
the exported graphs, so every backend applies the same dropout for the same seed.

OpenVINO and ONNX Runtime run a graph converted from the generator at one batch shape
(:func:`converted_model`). Converted graphs are cached on disk under
``cache_dir()/compiled``, one folder per key: the checkpoint's SHA-256, the backend and its
version, the torch version, the precision (except for OpenVINO, whose one graph is compiled
at any precision), the input shape and whether dropout masks are inputs. A folder is built
under a temporary name and renamed into place, so a cached graph is always complete; a
change of any part of the key builds a new one, and folders unused for :data:`CACHE_DAYS`
days are removed when another is built.

Precisions: ``fp32`` everywhere; ``bf16`` with torch (CPU or CUDA autocast) and OpenVINO
(its CPU inference precision); ``fp16`` with torch on CUDA; ``int8`` (a preview, see
:data:`PREVIEW_PRECISIONS`) with OpenVINO, quantized by NNCF when converted. Within one backend and
precision a batch's output depends only on its inputs and its shape.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from satgen_geo._cache import cache_dir
from satgen_geo.errors import ConfigError, MissingDependencyError, OutputError
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.spec import ModelSpec

__all__ = [
    "BACKENDS", "CACHE_DAYS", "CPU_BATCH", "FP32_STEM", "PRECISIONS", "PREVIEW_PRECISIONS", "Pending", "Runner", "TorchRunner",
    "auto_batch_size", "backend_version", "calibration_masks", "check_combination", "converted_model", "installed",
    "open_runner", "supported_precisions",
]

log = logging.getLogger(__name__)

#: Accepted ``backend`` values; ``auto`` is resolved by :func:`satgen_geo.precision.choose`.
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
#: Accepted ``precision`` values; ``auto`` is resolved by :func:`satgen_geo.precision.choose`.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
#: Precisions only ever run when asked for by name, and labelled "(preview)" in the output's tags: OpenVINO's
#: post-training INT8 (NNCF) runs several times faster but its images visibly differ from fp32's (about 23-28 dB).
PREVIEW_PRECISIONS = frozenset({"int8"})
#: Converted graphs not used for this many days are removed when another is built.
CACHE_DAYS = 30
#: Batch size on a CPU when none is given (larger batches gain little there and cost memory).
CPU_BATCH = 8
_EXTRAS = {
    "openvino": ("openvino", "satgen-geo[openvino]"), "onnxruntime": ("onnxruntime", "satgen-geo[onnx]"),
    "int8": ("nncf", "satgen-geo[int8]"),
}
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: The generator's layers that run in fp32 under autocast (see :class:`TorchRunner`).
FP32_STEM = ("initial_down", "down1")
_MASK_INPUTS = ("drop1", "drop2", "drop3")


#: A started network call: calling it waits for and returns the outputs.
Pending = Callable[[], np.ndarray]


class Runner(Protocol):
    """The network on one backend at one precision (see the module docstring)."""

    backend: str
    precision: str

    def __call__(self, x: Tensor, masks: Sequence[Tensor] | None) -> np.ndarray: ...

    def start(self, x: Tensor, masks: Sequence[Tensor] | None) -> Pending:
        """Launch a call; the result, called, waits for the outputs (a GPU keeps working meanwhile)."""
        ...


def auto_batch_size(device: torch.device, spec: ModelSpec, limit: int) -> int:
    """Windows per network call when none is given: :data:`CPU_BATCH` on a CPU or MPS, on CUDA as many as half
    the free GPU memory holds (about ``16 × features × tile_px²`` bytes of activations each), at most ``limit``."""
    if device.type != "cuda":
        return min(CPU_BATCH, limit)
    free, _total = torch.cuda.mem_get_info(device)
    per_window = 16 * spec.features * spec.tile_px**2
    return max(1, min(limit, free // 2 // per_window))


def installed(backend: str) -> bool:
    """Whether ``backend``'s Python package can be imported (torch always can)."""
    if backend == "torch":
        return True
    return importlib.util.find_spec(_EXTRAS[backend][0]) is not None


def backend_version(backend: str) -> str:
    """The version of ``backend``'s package (raises :class:`MissingDependencyError` when it is not installed)."""
    return str(_import(backend).__version__)


def supported_precisions(backend: str, device: torch.device) -> tuple[str, ...]:
    """The precisions ``backend`` runs on ``device``, ``fp32`` first."""
    if backend == "torch":
        return ("fp32", "fp16", "bf16") if device.type == "cuda" else ("fp32", "bf16")
    return ("fp32", "bf16", "int8") if backend == "openvino" else ("fp32",)


def check_combination(backend: str, precision: str, device: torch.device) -> None:
    """Reject a backend the device cannot use or a precision the backend cannot run there.

    Raises
    ------
    ConfigError
        ``param="backend"`` or ``param="precision"``, naming what works instead.
    """
    if backend != "torch" and device.type != "cpu":
        raise ConfigError(f"the {backend} backend runs on the CPU only, not on {device.type}; use the torch backend there",
                          param="backend")
    allowed = supported_precisions(backend, device)
    if precision not in allowed:
        raise ConfigError(f"the {backend} backend on {device.type} runs {', '.join(allowed)}, not {precision}; "
                          f"use one of those or auto", param="precision")


def open_runner(view: UNetGenerator, sha256: str, device: torch.device, backend: str, precision: str,
                shape: tuple[int, int, int, int]) -> Runner:
    """A runner for ``view`` (an inference view whose dropout mode is already set) on ``backend`` at ``precision``.

    ``shape`` is the input batch shape ``(N, C, H, W)`` every call will use; ``sha256``
    identifies the weights in the converted-graph cache.

    Raises
    ------
    ConfigError
        For a backend or precision that cannot run on ``device`` (:func:`check_combination`).
    MissingDependencyError
        When the backend's package is not installed (the message names the extra).
    """
    check_combination(backend, precision, device)
    if precision in PREVIEW_PRECISIONS:
        log.warning("%s is a preview: its images visibly differ from fp32's; use fp32 or auto for final output", precision)
    if backend == "torch":
        return TorchRunner(view, device, precision)
    path = converted_model(view, sha256, backend, precision, shape)
    return _OpenVINORunner(path, precision, view.mc_dropout) if backend == "openvino" else _OnnxRunner(path, view.mc_dropout)


class TorchRunner:
    """The generator in eager PyTorch: channels-last, autocast for ``bf16``/``fp16``.

    Under autocast the input stem (:data:`FP32_STEM`, 3 % of the work) still runs in fp32:
    the input noise (std 0.02 in [-1, 1] units) is finer than bf16's steps near ±1 (2⁻⁷),
    and rounding it there alone costs 15 dB of PSNR against fp32 (41 instead of 56 dB for
    a 64-feature network on real mask windows); the rest of the network takes it well.

    On CUDA, inputs are copied from pinned host memory without blocking and outputs come
    back the same way, so one batch's copies overlap the GPU's other work.
    """

    backend = "torch"

    def __init__(self, view: UNetGenerator, device: torch.device, precision: str) -> None:
        self.device, self.precision = device, precision
        self.autocast = _AUTOCAST.get(precision)
        # autocast would cast every weight again in every call; weights cast once give the same pixels
        self.view = view if self.autocast is None else _weights_as(view, self.autocast)

    def __call__(self, x: Tensor, masks: Sequence[Tensor] | None) -> np.ndarray:
        return self.start(x, masks)()

    def start(self, x: Tensor, masks: Sequence[Tensor] | None) -> Pending:
        """Launch the network on a batch; the returned callable waits for the outputs.

        On CUDA the inputs go up on a copy stream from pinned memory (so they overlap the
        previous batch's compute), and the outputs come back into pinned memory without
        blocking: the GPU works while the caller blends the previous batch.
        """
        x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        if self.device.type != "cuda":
            with torch.inference_mode(), autocast:
                y = self.view(x.to(self.device), masks=[m.to(self.device) for m in masks] if masks else None)
            out = y.float().contiguous().cpu().numpy()  # NCHW-contiguous: fast blending
            return lambda: out
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            inputs = [t.pin_memory().to(self.device, non_blocking=True) for t in (x, *(masks or ()))]
        compute.wait_stream(self._copy_stream)
        for tensor in inputs:
            tensor.record_stream(compute)
        with torch.inference_mode(), autocast:
            y = self.view(inputs[0], masks=inputs[1:] or None).float()
        host = torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(y, non_blocking=True)
        done = torch.cuda.Event()
        done.record(compute)

        def result() -> np.ndarray:
            done.synchronize()
            return host.numpy()

        return result

    @functools.cached_property
    def _copy_stream(self) -> torch.cuda.Stream:
        return torch.cuda.Stream(self.device)


def _weights_as(view: UNetGenerator, dtype: torch.dtype) -> UNetGenerator:
    """A copy of ``view`` (dropout mode, memory format) for autocast to ``dtype``: weights cast to it, the stem kept fp32."""
    stem = {id(p) for name in FP32_STEM for p in getattr(view, name).parameters()}
    memo: dict[int, object] = {
        id(p): nn.Parameter(p.detach() if id(p) in stem else p.detach().to(dtype), requires_grad=False)
        for p in view.parameters()
    }
    copied = copy.deepcopy(view, memo)
    for name in FP32_STEM:
        setattr(copied, name, _Fp32(getattr(copied, name)))
    return copied


class _Fp32(nn.Module):
    """Runs ``module`` in fp32 inside an autocast region."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float())


class _Converted:
    """What the converted-graph runners share: they compute on the CPU, at once."""

    def __call__(self, x: Tensor, masks: Sequence[Tensor] | None) -> np.ndarray:
        raise NotImplementedError

    def start(self, x: Tensor, masks: Sequence[Tensor] | None) -> Pending:
        y = self(x, masks)
        return lambda: y


class _OpenVINORunner(_Converted):
    backend = "openvino"

    def __init__(self, path: Path, precision: str, dropout: bool) -> None:
        self.precision, self.dropout = precision, dropout
        self.request = _openvino_model(str(path / "model.xml"), precision).create_infer_request()

    def __call__(self, x: Tensor, masks: Sequence[Tensor] | None) -> np.ndarray:
        inputs = _numpy_inputs(x, masks, self.dropout)
        return np.asarray(self.request.infer(list(inputs.values()))[0], dtype=np.float32)


class _OnnxRunner(_Converted):
    backend = "onnxruntime"
    precision = "fp32"

    def __init__(self, path: Path, dropout: bool) -> None:
        self.dropout = dropout
        self.session = _onnx_session(str(path / "model.onnx"))

    def __call__(self, x: Tensor, masks: Sequence[Tensor] | None) -> np.ndarray:
        return np.asarray(self.session.run(None, _numpy_inputs(x, masks, self.dropout))[0], dtype=np.float32)


def _numpy_inputs(x: Tensor, masks: Sequence[Tensor] | None, dropout: bool) -> dict[str, np.ndarray]:
    inputs = {"x": x.contiguous().numpy()}
    if dropout:
        if masks is None:
            raise ValueError("this graph takes dropout masks; pass the three masks of dropout_masks()")
        inputs.update({name: m.contiguous().numpy() for name, m in zip(_MASK_INPUTS, masks, strict=True)})
    return inputs


@functools.lru_cache(maxsize=4)
def _openvino_model(xml: str, precision: str) -> Any:
    """A compiled OpenVINO model (thread-safe; each runner makes its own infer request)."""
    ov = _import("openvino")
    hint = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision]  # int8: what is not quantized runs in fp32
    return ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})


@functools.lru_cache(maxsize=4)
def _onnx_session(path: str) -> Any:
    ort = _import("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _import(backend: str, module: str | None = None) -> Any:
    """``backend``'s package (or another ``module`` its extra installs), or a one-line error naming the extra."""
    default, extra = _EXTRAS[backend]
    module = module or default
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"the {backend} backend needs the {module} package: pip install '{extra}', or use the torch backend",
            param="backend",
        ) from None


class _Exportable(nn.Module):
    """The generator with its dropout masks as explicit inputs (what the converters trace)."""

    def __init__(self, view: UNetGenerator) -> None:
        super().__init__()
        self.view = view
        self.eval()  # keeps the view's dropout mode: exporters restore the wrapper's mode afterwards

    def forward(self, x: Tensor, drop1: Tensor | None = None, drop2: Tensor | None = None, drop3: Tensor | None = None) -> Tensor:
        return self.view(x, masks=None if drop1 is None else (drop1, drop2, drop3))


def converted_model(view: UNetGenerator, sha256: str, backend: str, precision: str, shape: tuple[int, int, int, int]) -> Path:
    """The cached folder holding ``view`` converted for ``backend`` at input ``shape``; built first if missing.

    Raises
    ------
    MissingDependencyError
        When the backend's package is not installed.
    OutputError
        When the cache folder cannot be written.
    """
    key = {
        "sha256": sha256, "backend": backend, "version": backend_version(backend), "torch": torch.__version__,
        # an OpenVINO graph serves every precision but int8 (its precision is set when it is compiled)
        "precision": "any" if backend == "openvino" and precision != "int8" else precision, "shape": list(shape),
        "dropout": view.mc_dropout, "format": 1,
    }
    root = cache_dir() / "compiled"
    folder = root / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    if folder.is_dir():
        with contextlib.suppress(OSError):  # a read-only cache is fine to read
            os.utime(folder)
        return folder
    started = time.perf_counter()
    try:
        root.mkdir(parents=True, exist_ok=True)
        _prune(root)
        tmp = root / f".{folder.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
        tmp.mkdir()
        try:
            _CONVERTERS[backend](view, shape, tmp, precision)
            (tmp / "key.json").write_text(json.dumps(key, indent=1))
            with contextlib.suppress(FileExistsError, OSError):  # another process built it meanwhile: keep theirs
                tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as err:
        raise OutputError(f"cannot write the converted-model cache in {root} ({err.strerror or err}); "
                          "point SATGEN_CACHE_DIR at a writable folder with free space", param="cache") from None
    if not folder.is_dir():
        raise OutputError(f"cannot write the converted-model cache in {root}; point SATGEN_CACHE_DIR at a writable folder",
                          param="cache")
    log.info("converted the model for %s (%s, batch %d) in %.1f s; cached in %s",
             backend, precision, shape[0], time.perf_counter() - started, folder)
    return folder


def _example(view: UNetGenerator, shape: tuple[int, int, int, int]) -> tuple[Tensor, ...]:
    x = torch.zeros(shape)
    if not view.mc_dropout:
        return (x,)
    return (x, *view.dropout_masks(range(shape[0]), shape[2], shape[3]))


def _to_openvino(view: UNetGenerator, shape: tuple[int, int, int, int], folder: Path, precision: str) -> None:
    ov = _import("openvino")
    with torch.no_grad(), _quiet_export():
        model = ov.convert_model(_Exportable(view), example_input=_example(view, shape))
    if precision == "int8":
        model = _quantized(model, view, shape)
    ov.save_model(model, folder / "model.xml", compress_to_fp16=False)  # fp32 weights: precision is a compile hint


def _quantized(model: Any, view: UNetGenerator, shape: tuple[int, int, int, int]) -> Any:
    """``model`` quantized to INT8 by NNCF, its ranges calibrated on :func:`calibration_masks` with render-like noise."""
    nncf = _import("int8")
    nncf.set_log_level(logging.ERROR)
    masks = calibration_masks(shape)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.02
    x = (torch.from_numpy(masks).float() / 127.5 - 1.0 + noise).clamp_(-1.0, 1.0)
    inputs = [x, *view.dropout_masks(range(shape[0]), shape[2], shape[3])] if view.mc_dropout else [x]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        return nncf.quantize(model, nncf.Dataset([[t.numpy() for t in inputs]]), subset_size=1)


def calibration_masks(shape: tuple[int, int, int, int]) -> np.ndarray:
    """A fixed uint8 batch like real masks: a quarter empty, a quarter one road, the rest blocks of roads and buildings."""
    rng = np.random.default_rng(0)
    n, channels, height, width = shape
    masks = np.zeros(shape, dtype=np.uint8)
    for i in range(n):
        kind = i % 4
        if kind == 1:
            row = int(rng.integers(16, height - 16))
            masks[i, 0, row : row + 8] = 255
        elif kind > 1:
            for c in range(channels):
                for _ in range(6):
                    y0, x0 = rng.integers(0, height - 16), rng.integers(0, width - 16)
                    masks[i, c, y0 : y0 + rng.integers(8, height // 3), x0 : x0 + rng.integers(8, width // 3)] = 255
    return masks


def _to_onnx(view: UNetGenerator, shape: tuple[int, int, int, int], folder: Path, _precision: str) -> None:
    _import("onnxruntime", "onnx")  # the exporter writes with the onnx package
    example = _example(view, shape)
    names = ["x", *_MASK_INPUTS][: len(example)]
    with torch.no_grad(), _quiet_export():
        torch.onnx.export(_Exportable(view), example, str(folder / "model.onnx"), input_names=names, output_names=["y"],
                          dynamo=False, opset_version=17)


@contextlib.contextmanager
def _quiet_export() -> Any:
    """The tracing exporters warn about our input-shape checks and InstanceNorm in training mode; both are fine."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


_CONVERTERS: dict[str, Callable[[UNetGenerator, tuple[int, int, int, int], Path, str], None]] = {
    "openvino": _to_openvino, "onnxruntime": _to_onnx,
}


def _prune(root: Path) -> None:
    """Remove converted graphs unused for :data:`CACHE_DAYS` days, and temporary folders a day old."""
    now = time.time()
    for entry in root.iterdir():
        with contextlib.suppress(OSError):
            age = now - entry.stat().st_mtime
            if age > CACHE_DAYS * 86400 or (entry.name.endswith(".partial") and age > 86400):
                shutil.rmtree(entry, ignore_errors=True)
