"""Converted graphs: the generator exported for OpenVINO or ONNX Runtime, cached on disk.

:func:`converted_model` returns a folder under ``cache_dir()/compiled``, one per key: the
checkpoint's SHA-256, the backend and its version, the torch version, the precision (except
for OpenVINO, whose one graph is compiled at any precision but int8), the input shape and
whether dropout masks are inputs (:data:`MASK_INPUTS`: the seeded masks of
:meth:`~satgen_geo.model.generator.UNetGenerator.dropout_masks`, so every backend applies the
same dropout for the same seed). A folder is built under a temporary name and renamed into
place, so a cached graph is always complete; a change of any part of the key builds a new
one, and folders unused for :data:`CACHE_DAYS` days are removed when another is built.
``int8`` graphs are quantized by NNCF on :func:`calibration_masks`.

The optional packages behind the backends are imported here (:func:`import_extra`), with a
one-line error naming the extra that installs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from satgen_geo._cache import cache_dir
from satgen_geo.errors import MissingDependencyError, OutputError
from satgen_geo.model.generator import UNetGenerator

__all__ = [
    "CACHE_DAYS", "MASK_INPUTS", "backend_version", "calibration_masks", "converted_model", "import_extra", "installed",
]

log = logging.getLogger(__name__)

#: Converted graphs not used for this many days are removed when another is built.
CACHE_DAYS = 30
#: The names of an exported graph's dropout-mask inputs (after its input ``x``).
MASK_INPUTS = ("drop1", "drop2", "drop3")
_EXTRAS = {
    "openvino": ("openvino", "satgen-geo[openvino]"), "onnxruntime": ("onnxruntime", "satgen-geo[onnx]"),
    "int8": ("nncf", "satgen-geo[int8]"),
}


def installed(backend: str) -> bool:
    """Whether ``backend``'s Python package can be imported (torch always can)."""
    if backend == "torch":
        return True
    return importlib.util.find_spec(_EXTRAS[backend][0]) is not None


def backend_version(backend: str) -> str:
    """The version of ``backend``'s package (raises :class:`MissingDependencyError` when it is not installed)."""
    return str(import_extra(backend).__version__)


def import_extra(backend: str, module: str | None = None) -> Any:
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
    ov = import_extra("openvino")
    with torch.no_grad(), _quiet_export():
        model = ov.convert_model(_Exportable(view), example_input=_example(view, shape))
    if precision == "int8":
        model = _quantized(model, view, shape)
    ov.save_model(model, folder / "model.xml", compress_to_fp16=False)  # fp32 weights: precision is a compile hint


def _quantized(model: Any, view: UNetGenerator, shape: tuple[int, int, int, int]) -> Any:
    """``model`` quantized to INT8 by NNCF, its ranges calibrated on :func:`calibration_masks` with render-like noise."""
    nncf = import_extra("int8")
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
    import_extra("onnxruntime", "onnx")  # the exporter writes with the onnx package
    example = _example(view, shape)
    names = ["x", *MASK_INPUTS][: len(example)]
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
