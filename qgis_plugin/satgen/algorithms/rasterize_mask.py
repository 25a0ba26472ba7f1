"""Rasterize roads and buildings to a two-band mask (``satgen mask``), no model involved."""

from __future__ import annotations

from . import arguments as a
from . import parameters as p
from .base import OSM_HELP, SatGenAlgorithm, ToolkitCommand
from .outputs import Output


class RasterizeMask(SatGenAlgorithm):
    """Area + OSM (Overpass or file) or road/building layers → two-band mask GeoTIFF."""

    extra_tags = ("mask", "rasterize", "rasterise", "openstreetmap", "osm", "vector", "label")
    help_anchor = "mask-from-openstreetmap-or-layers"

    def name(self) -> str:
        return "rasterizemask"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        return self.tr("Mask from OpenStreetMap or layers")

    def help_text(self) -> str:
        return self.tr(
            "Draws roads and buildings into a two-band mask GeoTIFF (band 1 roads, band 2 buildings, "
            "0/255), the input of 'Imagery from mask raster'. Fast; no model is used. In the map, "
            "roads show red, buildings green.\n\n"
            "Map data, from what is set: road line and/or building polygon layers (any CRS), else a "
            "local OSM extract (.osm.pbf/.osm/.osm.bz2), else the Overpass API (online; needs an "
            "extent or area layer). The extent or area-of-interest layer sets the area; without one "
            "the file's or layers' extent is used.\n"
            "Pixel size: metres per pixel. Output CRS: a metric CRS, or empty for the UTM zone.\n\n"
            + OSM_HELP)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API name
        p.add_extent(self, "Area (extent)")
        p.add_aoi(self)
        p.add_osm_source(self)
        p.add_layers(self)
        p.add_grid(self)
        p.add_output(self, "Mask")

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API name
        ok, message = p.check_source(self, parameters, context, layers_allowed=True)
        if not ok:
            return ok, message
        return super().checkParameterValues(parameters, context)

    def command(self, parameters, context, feedback):
        source = p.data_source(self, parameters, context, layers_allowed=True)
        output = a.output_path(self, parameters, p.OUTPUT, context)
        args = a.source_args(self, parameters, context, feedback, source) + a.grid_args(self, parameters, context)
        name = self.mask_name(a.source_label(self, parameters, context, source))
        return ToolkitCommand("mask", args + ["-o", output], [Output(p.OUTPUT, output, name, is_mask=True)], source)
