"""Generate imagery from road and building layers (``satgen generate --roads/--buildings``)."""

from __future__ import annotations

from .base import SatGenAlgorithm


class GenerateFromVector(SatGenAlgorithm):
    """Road lines and/or building polygons (any CRS, drawn layers too) → synthetic RGB GeoTIFF."""

    def name(self) -> str:
        return "generatefromvector"

    def displayName(self) -> str:
        return self.tr("Generate imagery from vector layers")

    def shortHelpString(self) -> str:
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
            "keeps the two-band mask (band 1 roads, band 2 buildings, 0/255).\n\n"
            "The output is synthetic imagery, not a photograph.")

    def initAlgorithm(self, config=None) -> None:
        self.add_layers()
        self.add_extent("Restrict to extent (empty = the layers' extent)")
        self.add_grid()
        self.add_render()
        self.add_output("Synthetic imagery")
        self.add_mask_output()

    def checkParameterValues(self, parameters, context):
        if not (self.has_value(parameters, self.ROADS) or self.has_value(parameters, self.BUILDINGS)):
            return False, self.tr("Choose a road line layer and/or a building polygon layer.")
        ok, message = self.check_checkpoint(parameters, context)
        if not ok:
            return ok, message
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_path(parameters, self.OUTPUT, context)
        mask_output = self.output_path(parameters, self.MASK_OUTPUT, context)
        args = self.layer_args(parameters, context, feedback)
        args += self.bbox_args(parameters, context, self.layers_crs(parameters, context))
        args += self.grid_args(parameters, context) + self.render_args(parameters, context) + ["-o", output]
        if mask_output:
            args += ["--mask-out", mask_output]
        self.run_cli("generate", args, feedback, [output, mask_output])
        return {self.OUTPUT: output, self.MASK_OUTPUT: mask_output or None}
