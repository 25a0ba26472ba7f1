"""Choosing the backend and precision a render runs at: ``auto`` resolved by detection and measurement.

``precision="auto"`` means fp16 on CUDA, fp32 on Apple MPS, and on a CPU: bf16 where the CPU
has native bf16 arithmetic (AMX or AVX512-BF16, :func:`cpu_info`) *and* a short calibration
shows it faster than fp32, its output at least :data:`MIN_PSNR_DB` dB PSNR from fp32's; else fp32.
``backend="auto"`` means torch on a GPU, and on a CPU the faster of torch and OpenVINO (or,
where OpenVINO is not installed, ONNX Runtime, slower than OpenVINO on CPUs) in the same
calibration. Without native bf16, bf16 is never tried (it runs 25-60× slower there); an
explicit choice is never second-guessed.

The calibration times every candidate on the render's batch shape (one warm-up call, then
:data:`CALIBRATION_CALLS` timed calls in turns, the fastest kept) on a fixed batch like real
masks (:func:`calibration_masks`: empty windows, a lone road, blocks; with the render's own
noise and dropout) and compares its output with the first candidate's (fp32). Its decision
is kept in ``cache_dir()/calibration.json`` under a key of everything it depends on
(weights, CPU, library versions, batch shape, threads), so it runs once per machine and
model; later renders reuse it, which keeps their pixels identical. Delete the file to
calibrate again (say, after a calibration on a busy machine).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from satgen_geo._cache import cache_dir
from satgen_geo.backends import BACKENDS, Runner, check_combination, open_runner, supported_precisions
from satgen_geo.convert import backend_version, calibration_masks, installed
from satgen_geo.model.generator import UNetGenerator

__all__ = [
    "CALIBRATION_CALLS", "MIN_PSNR_DB", "Choice", "CpuInfo", "Inputs", "candidates", "choose", "cpu_info", "psnr",
]

log = logging.getLogger(__name__)

#: Turns uint8 masks ``(N, C, H, W)`` and one seed per window into the network's inputs (noisy windows, dropout masks).
Inputs = Callable[[np.ndarray, list[int]], tuple[torch.Tensor, list[torch.Tensor] | None]]

#: Lowest PSNR (dB, against fp32) at which ``auto`` may pick a lower precision.
MIN_PSNR_DB = 45.0
#: Timed network calls per candidate in a calibration (after one warm-up call).
CALIBRATION_CALLS = 2
#: CPU flags that mean native bf16 arithmetic.
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
_SHOWN_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "avx512_vnni")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and instruction-set flags (lower case, as Linux names them)."""

    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        """Whether the CPU computes in bf16 natively (AMX or AVX512-BF16)."""
        return bool(self.flags & BF16_FLAGS)

    def describe(self) -> str:
        """``"<model> (<notable flags>)"``, for logs and benchmark output."""
        shown = [flag for flag in _SHOWN_FLAGS if flag in self.flags]
        return f"{self.model} ({' '.join(shown) or 'no AVX2'})"


@cache
def cpu_info() -> CpuInfo:
    """This machine's CPU, from ``/proc/cpuinfo`` (Linux); elsewhere the model name and no flags."""
    model, flags = platform.processor() or platform.machine(), frozenset[str]()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return CpuInfo(model, flags)


@dataclass(frozen=True)
class Choice:
    """A resolved backend and precision, and why (for the log and the output's tags)."""

    backend: str
    precision: str
    reason: str


def candidates(backend: str, precision: str, device: torch.device, cpu: CpuInfo) -> list[tuple[str, str]]:
    """The (backend, precision) pairs ``auto`` chooses among, the fp32 reference first.

    Raises
    ------
    ConfigError
        For an explicit backend or precision the device cannot run.
    MissingDependencyError
        For a backend that is needed and not installed.
    """
    if backend == "auto":
        backends = ["torch"] + ([b for b in BACKENDS[2:] if installed(b)][:1] if device.type == "cpu" else [])
        if precision != "auto":  # those of them that run it, else the one that does (int8: OpenVINO)
            runs = [b for b in backends if precision in supported_precisions(b, device)]
            backends = runs or [b for b in BACKENDS[1:] if precision in supported_precisions(b, device)][:1] or backends
    else:
        backends = [backend]
    for name in backends:
        if name != "torch":
            backend_version(name)  # a missing package fails here, by name
    pairs = []
    for name in backends:
        if precision != "auto":
            check_combination(name, precision, device)
            pairs.append((name, precision))
        elif device.type == "cuda":
            check_combination(name, "fp16", device)
            pairs.append((name, "fp16"))
        else:
            check_combination(name, "fp32", device)
            bf16 = device.type == "cpu" and cpu.native_bf16 and "bf16" in supported_precisions(name, device)
            pairs += [(name, "fp32")] + ([(name, "bf16")] if bf16 else [])
    return sorted(pairs, key=lambda pair: pair[1] != "fp32")  # fp32 first: the reference


def choose(view: UNetGenerator, sha256: str, device: torch.device, backend: str, precision: str,
           shape: tuple[int, int, int, int], inputs: Inputs) -> tuple[Choice, Runner]:
    """Resolve ``auto`` backend/precision for ``view`` at batch shape ``shape``; return the choice and its runner.

    An explicit pair is only checked. Several candidates are calibrated (module
    docstring) on ``inputs(masks, seeds)`` of :func:`calibration_masks`, or their cached
    decision is reused.
    """
    pairs = candidates(backend, precision, device, cpu_info())
    if len(pairs) == 1:
        (name, prec), = pairs
        how = "as requested" if (backend, precision) == pairs[0] else f"auto on {device.type}"
        return Choice(name, prec, how), open_runner(view, sha256, device, name, prec, shape)
    key = _key(sha256, device, backend, precision, shape, view.mc_dropout, pairs)
    cached = _decisions().get(key)
    if isinstance(cached, dict) and isinstance(cached.get("pick"), list) and tuple(cached["pick"]) in pairs:
        name, prec = cached["pick"]
        runner = open_runner(view, sha256, device, name, prec, shape)
        return Choice(name, prec, f"{cached.get('reason', 'calibrated')} (cached calibration)"), runner
    return _calibrate(view, sha256, device, shape, pairs, key, inputs)


def _calibrate(view: UNetGenerator, sha256: str, device: torch.device, shape: tuple[int, int, int, int],
               pairs: list[tuple[str, str]], key: str, inputs: Inputs) -> tuple[Choice, Runner]:
    """Time the candidates in turns (so that other load hits them alike), keep each one's fastest call."""
    started = time.perf_counter()
    x, masks = inputs(calibration_masks(shape), list(range(shape[0])))
    runners = [open_runner(view, sha256, device, name, prec, shape) for name, prec in pairs]
    outputs = [runner(x, masks) for runner in runners]  # warm-up, and the outputs compared
    seconds = [math.inf] * len(runners)
    for _ in range(CALIBRATION_CALLS):
        for i, runner in enumerate(runners):
            tick = time.perf_counter()
            runner(x, masks)
            seconds[i] = min(seconds[i], time.perf_counter() - tick)
    rates = [shape[0] / s for s in seconds]
    quality = [psnr(out, outputs[0]) for out in outputs]
    best = max((i for i in range(len(pairs)) if quality[i] >= MIN_PSNR_DB), key=lambda i: rates[i])
    name, prec = pairs[best]
    table = ", ".join(f"{n} {p} {r:.1f}/s" + (f" {db:.0f} dB" if p != "fp32" else "")
                      for (n, p), r, db in zip(pairs, rates, quality, strict=True))
    reason = f"calibrated on {cpu_info().model}: {table}"
    _save_decision(key, {"pick": [name, prec], "reason": reason})
    log.info("chose the %s backend at %s in a %.1f s calibration (%s windows/s at batch %d)",
             name, prec, time.perf_counter() - started, table, shape[0])
    return Choice(name, prec, reason), runners[best]


def psnr(image: np.ndarray, reference: np.ndarray, peak: float = 2.0) -> float:
    """PSNR in dB of ``image`` against ``reference`` (network outputs in [-1, 1]: peak 2); ``inf`` when equal."""
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _key(sha256: str, device: torch.device, backend: str, precision: str, shape: tuple[int, ...], dropout: bool,
         pairs: list[tuple[str, str]]) -> str:
    cpu = cpu_info()
    versions = {name: backend_version(name) for name, _ in pairs if name != "torch"}
    return json.dumps([sha256, str(device), cpu.model, sorted(cpu.flags & BF16_FLAGS), torch.__version__, versions, backend,
                       precision, list(shape), dropout, torch.get_num_threads()])


def _calibration_file() -> Path:
    return cache_dir() / "calibration.json"


def _decisions() -> dict[str, dict]:
    try:
        with open(_calibration_file()) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_decision(key: str, decision: dict) -> None:
    """Add ``decision`` to the calibration file (atomically; a failure only costs a later recalibration)."""
    path = _calibration_file()
    tmp = path.with_name(f".calibration.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**_decisions(), key: decision}, indent=1))
        os.replace(tmp, path)
    except OSError as err:
        log.warning("cannot keep the calibration in %s (%s); the next render calibrates again", path, err)
        tmp.unlink(missing_ok=True)
