"""Generate imagery from a mask raster (``satgen render``)."""

from __future__ import annotations

import os

from qgis.core import QgsProcessingException, QgsProcessingParameterRasterLayer, QgsProviderRegistry

from .base import SatGenAlgorithm


def _band_count(path: str, layer) -> int:
    """Bands in the file (QGIS counts a GeoTIFF's per-dataset mask as an extra alpha band)."""
    try:
        from osgeo import gdal

        dataset = gdal.Open(path)
        if dataset is not None:
            return dataset.RasterCount
    except ImportError:
        pass
    return layer.bandCount()


class GenerateFromMask(SatGenAlgorithm):
    """Two-band mask GeoTIFF (band 1 roads, band 2 buildings) → synthetic RGB GeoTIFF."""

    def name(self) -> str:
        return "generatefrommask"

    def displayName(self) -> str:
        return self.tr("Generate imagery from a mask raster")

    def shortHelpString(self) -> str:
        return self.tr(
            "Renders a two-band mask GeoTIFF (band 1 roads, band 2 buildings, values 0/255, uint8; as "
            "written by 'Rasterize roads and buildings to a mask') into a synthetic RGB GeoTIFF with "
            "the mask's CRS and pixel grid. Edit the mask (e.g. with the Raster calculator) to design "
            "scenes.\n\nSeed: the same seed gives an identical image. Model: a .safetensors/.pth "
            "generator, or empty for the shipped model.\n\n"
            "The output is synthetic imagery, not a photograph.")

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, self.tr("Mask raster (2 bands)")))
        self.add_render()
        self.add_output("Synthetic imagery")

    def checkParameterValues(self, parameters, context):
        layer = self.parameterAsRasterLayer(parameters, self.MASK, context)
        if layer is None:
            return False, self.tr("Choose the mask raster.")
        path = self._path(layer)
        if not path:
            return False, self.tr("The mask raster must be a local GeoTIFF file.")
        bands = _band_count(path, layer)
        if bands != 2:
            return False, self.tr("The mask raster {} has {} band(s); a mask has 2 (roads, buildings). "
                                  "Build one with 'Rasterize roads and buildings to a mask'.").format(
                                      layer.name(), bands)
        ok, message = self.check_checkpoint(parameters, context)
        if not ok:
            return ok, message
        return super().checkParameterValues(parameters, context)

    @staticmethod
    def _path(layer) -> str:
        parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
        path = parts.get("path") or layer.source()
        return path if os.path.isfile(path) else ""

    def processAlgorithm(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, self.MASK, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.MASK))
        mask = self._path(layer)
        if not mask:
            raise QgsProcessingException(self.tr("The mask raster must be a local GeoTIFF file."))
        output = self.output_path(parameters, self.OUTPUT, context)
        self.run_cli("render", [mask, *self.render_args(parameters, context), "-o", output], feedback, [output])
        return {self.OUTPUT: output}
