"""Inference backends: one generator run by torch, OpenVINO or ONNX Runtime at a given precision.

A *runner* takes a batch of network inputs (float32 ``(N, C, H, W)`` in [-1, 1]) and, when
dropout is on, the three seeded dropout masks of
:meth:`~satgen_geo.model.generator.UNetGenerator.dropout_masks`, and returns the network's
float32 output as a NumPy array. The masks are drawn outside the network and are inputs of
the exported graphs, so every backend applies the same dropout for the same seed.

OpenVINO and ONNX Runtime run a graph converted from the generator at one batch shape,
cached on disk by :func:`satgen_geo.convert.converted_model`.

Precisions: ``fp32`` everywhere; ``bf16`` with torch (CPU or CUDA autocast) and OpenVINO
(its CPU inference precision); ``fp16`` with torch on CUDA; ``int8`` (a preview, see
:data:`PREVIEW_PRECISIONS`) with OpenVINO, quantized by NNCF when converted. Within one backend and
precision a batch's output depends only on its inputs and its shape.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from satgen_geo.convert import MASK_INPUTS, converted_model, import_extra
from satgen_geo.errors import ConfigError
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.spec import ModelSpec

__all__ = [
    "BACKENDS", "CPU_BATCH", "FP32_STEM", "PRECISIONS", "PREVIEW_PRECISIONS", "Pending", "Runner", "TorchRunner",
    "auto_batch_size", "check_combination", "open_runner", "supported_precisions",
]

log = logging.getLogger(__name__)

#: Accepted ``backend`` values; ``auto`` is resolved by :func:`satgen_geo.precision.choose`.
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
#: Accepted ``precision`` values; ``auto`` is resolved by :func:`satgen_geo.precision.choose`.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
#: Precisions only ever run when asked for by name, and labelled "(preview)" in the output's tags: OpenVINO's
#: post-training INT8 (NNCF) runs several times faster but its images visibly differ from fp32's (about 23-28 dB).
PREVIEW_PRECISIONS = frozenset({"int8"})
#: Batch size on a CPU when none is given (larger batches gain little there and cost memory).
CPU_BATCH = 8
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: The generator's layers that run in fp32 under autocast (see :class:`TorchRunner`).
FP32_STEM = ("initial_down", "down1")


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
        #: The layout the inputs are given in; the view's 4-D weights are in it too (inference_view).
        self.memory_format = torch.channels_last
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
        x = x.contiguous(memory_format=self.memory_format)
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
        inputs.update({name: m.contiguous().numpy() for name, m in zip(MASK_INPUTS, masks, strict=True)})
    return inputs


@functools.lru_cache(maxsize=4)
def _openvino_model(xml: str, precision: str) -> Any:
    """A compiled OpenVINO model (thread-safe; each runner makes its own infer request)."""
    ov = import_extra("openvino")
    hint = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision]  # int8: what is not quantized runs in fp32
    return ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})


@functools.lru_cache(maxsize=4)
def _onnx_session(path: str) -> Any:
    ort = import_extra("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


