"""Imagery from road and building layers (``satgen generate --roads/--buildings``)."""

from __future__ import annotations

from . import parameters as p
from .base import SatGenAlgorithm


class GenerateFromVector(SatGenAlgorithm):
    """Road lines and/or building polygons (any CRS, drawn layers too) → synthetic RGB GeoTIFF."""

    extra_tags = ("vector", "layers", "lines", "polygons", "drawn")
    help_anchor = "imagery-from-vector-layers"

    def name(self) -> str:
        return "generatefromvector"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        return self.tr("Imagery from vector layers")

    def help_text(self) -> str:
        return self.tr(
            "Renders a road line layer and/or a building polygon layer (any CRS; file, database, memory "
            "or freshly drawn layers) into a georeferenced synthetic RGB GeoTIFF.\n\n"
            "Roads: a 'highway' attribute (OSM classes such as residential, primary, service) sets the "
            "drawn width, as do 'width' (metres) or 'lanes'; features without one are drawn as 6 m "
            "roads. Footway/path/cycleway classes are left out. Buildings: every polygon is a building.\n"
            "Extent: optional; restricts the image to this area, otherwise the layers' extent is used.\n"
            "Pixel size: metres per pixel (the model was trained at 1 m). Output CRS: a metric CRS, or "
            "empty for the area's UTM zone. Seed: the same seed gives an identical image. Model: a "
            ".safetensors/.pth generator, or empty for the shipped model. The optional mask output "
            "keeps the two-band mask (band 1 roads, band 2 buildings, 0/255); it is kept when the "
            "image part is cancelled.\n\n"
            "The output is synthetic imagery, not a photograph.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API name
        p.add_layers(self, suggest=True)
        p.add_extent(self, "Restrict to extent (empty = the layers' extent)")
        p.add_grid(self)
        p.add_render(self)
        p.add_output(self, "Synthetic imagery")
        p.add_mask_output(self)

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API name
        if not p.has_layers(parameters):
            return False, self.tr("Choose a road line layer and/or a building polygon layer.")
        ok, message = p.check_checkpoint(self, parameters, context)
        if not ok:
            return ok, message
        return super().checkParameterValues(parameters, context)

    def command(self, parameters, context, feedback):
        return self.generate_command(parameters, context, feedback, p.DataSource.LAYERS)
