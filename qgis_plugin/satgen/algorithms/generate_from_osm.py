"""Generate imagery from OpenStreetMap (``satgen generate`` with --bbox/--aoi and --osm or Overpass)."""

from __future__ import annotations

from .base import OSM_HELP, SatGenAlgorithm


class GenerateFromOsm(SatGenAlgorithm):
    """Area (extent or polygon layer) → OSM roads and buildings → synthetic RGB GeoTIFF."""

    def name(self) -> str:
        return "generatefromosm"

    def displayName(self) -> str:
        return self.tr("Generate imagery from OpenStreetMap")

    def shortHelpString(self) -> str:
        return self.tr(
            "Draws the OpenStreetMap roads and buildings of an area into a mask and renders it with the "
            "Pix2Pix generator into a georeferenced synthetic RGB GeoTIFF.\n\n"
            "Area: an extent (any CRS) or a polygon layer. Map data: the Overpass API (online, at most "
            "50 km²) or a local OSM extract (.osm.pbf/.osm/.osm.bz2, offline; with no area set, the "
            "file's own extent is used).\n"
            "Pixel size: metres per pixel (the model was trained at 1 m). Output CRS: a metric CRS, or "
            "empty for the area's UTM zone. Seed: the same seed gives an identical image. Model: a "
            ".safetensors/.pth generator, or empty for the shipped model. The optional mask output "
            "keeps the two-band mask (band 1 roads, band 2 buildings, 0/255).\n\n"
            "Runs the SatGen toolkit's satgen command (configure it under Processing → Providers → "
            "SatGen).\n\n" + OSM_HELP)

    def initAlgorithm(self, config=None) -> None:
        self.add_extent("Area (extent)")
        self.add_aoi()
        self.add_osm_source(["Overpass API (online)", "Local OSM file"])
        self.add_grid()
        self.add_render()
        self.add_output("Synthetic imagery")
        self.add_mask_output()

    def checkParameterValues(self, parameters, context):
        for ok, message in (self.check_osm_source(parameters, context), self.check_checkpoint(parameters, context)):
            if not ok:
                return ok, message
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_path(parameters, self.OUTPUT, context)
        mask_output = self.output_path(parameters, self.MASK_OUTPUT, context)
        args = self.area_args(parameters, context, feedback) + self.osm_args(parameters, context)
        args += self.grid_args(parameters, context) + self.render_args(parameters, context) + ["-o", output]
        if mask_output:
            args += ["--mask-out", mask_output]
        self.run_cli("generate", args, feedback, [output, mask_output])
        return {self.OUTPUT: output, self.MASK_OUTPUT: mask_output or None}
