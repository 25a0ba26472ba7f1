"""Loading the outputs into the project: layer names and the mask's style.

The Processing dialog loads an output only when its "Open output file" box is ticked, and
that box stays disabled for an optional output such as the mask. Here every output of a
run is loaded together with the image whenever the dialog loads any of them, each under a
name that tells runs apart (source and seed), the masks styled: roads red, buildings
green, the rest transparent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, List, Sequence

from qgis.core import (
    Qgis,
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsRasterLayer,
    QgsRasterTransparency,
)


@dataclass(frozen=True)
class Output:
    """One raster an algorithm writes: its parameter, path, layer name and whether it is a mask."""

    parameter: str
    path: str
    name: str
    is_mask: bool = False


def style_mask(layer: QgsRasterLayer) -> None:
    """Show a two-band mask as roads red, buildings green, everything else transparent."""
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, -1)
    for set_enhancement in (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement):
        enhancement = QgsContrastEnhancement(Qgis.Byte)
        enhancement.setMinimumValue(0)
        enhancement.setMaximumValue(255)
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        set_enhancement(enhancement)
    empty = QgsRasterTransparency.TransparentThreeValuePixel()
    empty.red = empty.green = empty.blue = 0.0
    empty.percentTransparent = 100.0
    transparency = QgsRasterTransparency()
    transparency.setTransparentThreeValuePixelList([empty])
    renderer.setRasterTransparency(transparency)
    if layer.bandCount() > 2:  # GDAL's per-dataset mask (outside the area) shows up as band 3
        renderer.setAlphaBand(3)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


class MaskStyle(QgsProcessingLayerPostProcessorInterface):
    """Applies :func:`style_mask` when Processing has loaded a mask output."""

    #: The Python objects must outlive the Processing context that calls them.
    _alive: ClassVar[List["MaskStyle"]] = []

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 - QGIS API name
        if isinstance(layer, QgsRasterLayer):
            style_mask(layer)

    @classmethod
    def create(cls) -> "MaskStyle":
        instance = cls()
        cls._alive = cls._alive[-31:] + [instance]
        return instance


def load_on_completion(context: QgsProcessingContext, outputs: Sequence[Output]) -> None:
    """Load all ``outputs`` into the project the dialog loads any of them into (if it does)."""
    written = [output for output in outputs if output.path]
    project = next((context.layerToLoadOnCompletionDetails(output.path).project for output in written
                    if context.willLoadLayerOnCompletion(output.path)), None)
    if project is None:
        return
    for output in written:
        details = QgsProcessingContext.LayerDetails(output.name, project, output.parameter,
                                                    QgsProcessingUtils.LayerHint.Raster)
        if output.is_mask:
            details.setPostProcessor(MaskStyle.create())
        context.addLayerToLoadOnCompletion(output.path, details)
