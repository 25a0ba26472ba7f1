"""The end-to-end job: area → OSM mask → synthetic RGB GeoTIFF (``satgen generate``)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from satgen_geo._atomic import check_writable
from satgen_geo.engine import RenderConfig, RenderResult, render
from satgen_geo.mask import MaskConfig, MaskResult, MaskSource, build_mask
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.progress import CancelFn, ProgressFn


@dataclass(frozen=True)
class GenerateResult:
    """The mask and the image :func:`generate` wrote."""

    mask: MaskResult
    image: RenderResult


def generate(
    output: str | Path,
    source: MaskSource,
    model: LoadedModel,
    mask_config: MaskConfig | None = None,
    render_config: RenderConfig | None = None,
    mask_output: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> GenerateResult:
    """Build the mask for an area and render it; keep the mask only if ``mask_output`` is given."""
    check_writable(output)
    if mask_output is not None:
        existed = Path(mask_output).expanduser().exists()
        mask = build_mask(mask_output, source, mask_config, progress, cancel)
        try:
            return GenerateResult(mask, render(mask.path, output, model, render_config, progress, cancel))
        except BaseException:
            if not existed:  # all or nothing: no mask without its image
                mask.path.unlink(missing_ok=True)
            raise
    with tempfile.TemporaryDirectory(prefix="satgen-", dir=Path(output).expanduser().parent) as tmp:
        mask = build_mask(Path(tmp) / "mask.tif", source, mask_config, progress, cancel)
        return GenerateResult(mask, render(mask.path, output, model, render_config, progress, cancel))
