"""The end-to-end job: area → OSM mask → synthetic RGB GeoTIFF (``satgen generate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from satgen_geo._atomic import check_distinct, check_writable, scratch_dir
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
    """Build the mask for an area and render it; keep the mask only if ``mask_output`` is given.

    A mask written to ``mask_output`` is kept once it is complete, even when the render
    fails or is cancelled afterwards: it is a finished output the caller asked for. Both
    outputs are checked before any work: writable, and neither the same file as an input
    nor as each other. Without ``mask_output`` the mask lives in a temporary folder beside
    ``output`` (named after this process, see :mod:`satgen_geo._atomic`).
    """
    output = check_writable(output)
    check_distinct(output, "output", {**source.inputs(), "mask_output": mask_output})
    if mask_output is not None:
        mask_output = check_writable(mask_output, "mask_output")
        check_distinct(mask_output, "mask_output", source.inputs())
        mask = build_mask(mask_output, source, mask_config, progress, cancel)
        return GenerateResult(mask, render(mask.path, output, model, render_config, progress, cancel))
    with scratch_dir(output.parent) as tmp:
        mask = build_mask(tmp / "mask.tif", source, mask_config, progress, cancel)
        return GenerateResult(mask, render(mask.path, output, model, render_config, progress, cancel))
