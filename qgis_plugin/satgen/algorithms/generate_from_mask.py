"""Imagery from a mask raster (``satgen render``)."""

from __future__ import annotations

from qgis.core import QgsProcessingException

from . import arguments as a
from . import parameters as p
from .base import SatGenAlgorithm, ToolkitCommand
from .outputs import Output


class GenerateFromMask(SatGenAlgorithm):
    """Two-band mask GeoTIFF (band 1 roads, band 2 buildings) → synthetic RGB GeoTIFF."""

    extra_tags = ("mask", "raster", "render", "design", "scene")
    help_anchor = "imagery-from-mask-raster"

    def name(self) -> str:
        return "generatefrommask"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        return self.tr("Imagery from mask raster")

    def help_text(self) -> str:
        return self.tr(
            "Renders a two-band mask GeoTIFF (band 1 roads, band 2 buildings, values 0/255, uint8; as "
            "written by 'Mask from OpenStreetMap or layers') into a synthetic RGB GeoTIFF with the "
            "mask's CRS and pixel grid. Edit the mask (e.g. with the Raster calculator) to design "
            "scenes.\n\nSeed: the same seed gives an identical image. Model: a .safetensors/.pth "
            "generator, or empty for the shipped model.\n\n"
            "The output is synthetic imagery, not a photograph.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API name
        p.add_mask(self)
        p.add_render(self)
        p.add_output(self, "Synthetic imagery")

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API name
        layer = self.parameterAsRasterLayer(parameters, p.MASK, context)
        if layer is None:
            return False, self.tr("Choose the mask raster.")
        path = p.raster_path(layer)
        if not path:
            return False, self.tr("The mask raster must be a local GeoTIFF file.")
        bands = p.band_count(path, layer)
        if bands != 2:
            return False, self.tr("The mask raster {} has {} band(s); a mask has 2 (roads, buildings). "
                                  "Build one with 'Mask from OpenStreetMap or layers'.").format(layer.name(), bands)
        ok, message = p.check_checkpoint(self, parameters, context)
        if not ok:
            return ok, message
        return super().checkParameterValues(parameters, context)

    def command(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, p.MASK, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, p.MASK))
        mask = p.raster_path(layer)
        if not mask:
            raise QgsProcessingException(self.tr("The mask raster must be a local GeoTIFF file."))
        output = a.output_path(self, parameters, p.OUTPUT, context)
        name = self.image_name(layer.name(), self.parameterAsInt(parameters, p.SEED, context))
        args = [mask, *a.render_args(self, parameters, context), "-o", output]
        return ToolkitCommand("render", args, [Output(p.OUTPUT, output, name)], p.DataSource.MASK)
