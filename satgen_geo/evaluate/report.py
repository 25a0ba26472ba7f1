"""The evaluation's outputs: a contact sheet PNG and a strict JSON report.

:func:`write_report` writes strict JSON: floats rounded to 6 significant digits, infinite
values as the strings ``"inf"`` / ``"-inf"`` and NaN as ``null``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from satgen_geo._atomic import atomic_path
from satgen_geo._validate import check_int
from satgen_geo.errors import EvaluationError
from satgen_geo.train.datasets import Pair

log = logging.getLogger(__name__)

__all__ = ["CONTACT_GAP_PX", "contact_sheet", "write_report"]

#: Gap between the panels (and rows) of a contact sheet, in pixels.
CONTACT_GAP_PX = 4
_PANEL_PX = 256
_GAP_COLOUR = (255, 255, 255)
_SIGNIFICANT_DIGITS = 6


def _panel(array: np.ndarray, resample: Image.Resampling) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(np.moveaxis(np.asarray(array, dtype=np.uint8), 0, -1)))
    if image.size != (_PANEL_PX, _PANEL_PX):
        image = image.resize((_PANEL_PX, _PANEL_PX), resample)
    return image


def contact_sheet(
    pairs: Sequence[Pair], generated: Sequence[np.ndarray], path: str | Path, max_rows: int = 8
) -> Path:
    """Write a PNG with one row per pair: [mask | generated | real].

    The mask is drawn red = roads, green = buildings. Panels are 256×256 (resized if the
    pairs are larger), separated by :data:`CONTACT_GAP_PX` white pixels, so the sheet is
    ``3*256 + 2*gap`` wide and ``rows*256 + (rows-1)*gap`` tall.

    Parameters
    ----------
    pairs, generated
        Pairs and the generated images, in the same order.
    path
        PNG to write (atomically).
    max_rows
        Show at most the first ``max_rows`` pairs.

    Returns
    -------
    Path
        ``path``.
    """
    if len(pairs) != len(generated):
        raise EvaluationError(f"got {len(pairs)} pairs but {len(generated)} generated images")
    if not pairs:
        raise EvaluationError("no pairs to put on a contact sheet")
    check_int(max_rows, "sheet_rows", "contact sheet rows")
    rows = min(len(pairs), max_rows)
    gap = CONTACT_GAP_PX
    sheet = Image.new("RGB", (3 * _PANEL_PX + 2 * gap, rows * _PANEL_PX + (rows - 1) * gap), _GAP_COLOUR)
    for r, (pair, fake) in enumerate(zip(pairs[:rows], generated[:rows], strict=True)):
        mask_rgb = np.concatenate([pair.mask, np.zeros_like(pair.mask[:1])])
        panels = (
            _panel(mask_rgb, Image.Resampling.NEAREST),
            _panel(fake, Image.Resampling.BILINEAR),
            _panel(pair.image, Image.Resampling.BILINEAR),
        )
        for c, panel in enumerate(panels):
            sheet.paste(panel, (c * (_PANEL_PX + gap), r * (_PANEL_PX + gap)))
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    log.info("contact sheet (%d rows) written to %s", rows, path)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")
    if isinstance(value, Path):
        return str(value)
    return value


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` as JSON, atomically.

    Floats are rounded to 6 significant digits; ``inf`` becomes the string ``"inf"``
    (``"-inf"``), NaN becomes ``null``; NumPy values become plain numbers and lists.

    Returns
    -------
    Path
        ``path``.
    """
    text = json.dumps(_jsonable(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("evaluation report written to %s", path)
    return path


