"""Rasterize roads and buildings to a two-band mask (``satgen mask``), no model involved."""

from __future__ import annotations

from .base import OSM_HELP, SatGenAlgorithm


class RasterizeMask(SatGenAlgorithm):
    """Area + OSM (Overpass or file) or road/building layers → two-band mask GeoTIFF."""

    def name(self) -> str:
        return "rasterizemask"

    def displayName(self) -> str:
        return self.tr("Rasterize roads and buildings to a mask")

    def shortHelpString(self) -> str:
        return self.tr(
            "Draws roads and buildings into a two-band mask GeoTIFF (band 1 roads, band 2 buildings, "
            "0/255), the input of 'Generate imagery from a mask raster'. Fast; no model is used.\n\n"
            "Map data: the Overpass API (online; needs an extent or area layer), a local OSM extract "
            "(.osm.pbf/.osm/.osm.bz2), or road line and building polygon layers (any CRS). The extent "
            "or area-of-interest layer sets the area; without one the file's or layers' extent is used.\n"
            "Pixel size: metres per pixel. Output CRS: a metric CRS, or empty for the UTM zone.\n\n"
            + OSM_HELP)

    def initAlgorithm(self, config=None) -> None:
        self.add_extent("Area (extent)")
        self.add_aoi()
        self.add_osm_source(["Overpass API (online)", "Local OSM file", "Road and building layers"])
        self.add_layers()
        self.add_grid()
        self.add_output("Mask")

    def checkParameterValues(self, parameters, context):
        ok, message = self.check_osm_source(parameters, context, layers_option=True)
        if not ok:
            return ok, message
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_path(parameters, self.OUTPUT, context)
        if self.parameterAsEnum(parameters, self.SOURCE, context) == 2:
            args = self.layer_args(parameters, context, feedback)
            args += self.area_args(parameters, context, feedback, self.layers_crs(parameters, context))
        else:
            args = self.area_args(parameters, context, feedback) + self.osm_args(parameters, context)
        args += self.grid_args(parameters, context) + ["-o", output]
        self.run_cli("mask", args, feedback, [output])
        return {self.OUTPUT: output}
