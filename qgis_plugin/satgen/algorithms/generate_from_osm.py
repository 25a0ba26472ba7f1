"""Imagery from OpenStreetMap (``satgen generate`` with --bbox/--aoi and --osm or Overpass)."""

from __future__ import annotations

from . import parameters as p
from .base import OSM_HELP, SatGenAlgorithm


class GenerateFromOsm(SatGenAlgorithm):
    """Area (extent or polygon layer) → OSM roads and buildings → synthetic RGB GeoTIFF."""

    extra_tags = ("openstreetmap", "osm", "overpass", "pbf")
    help_anchor = "imagery-from-openstreetmap"

    def name(self) -> str:
        return "generatefromosm"

    def displayName(self) -> str:  # noqa: N802 - QGIS API name
        return self.tr("Imagery from OpenStreetMap")

    def help_text(self) -> str:
        return self.tr(
            "Draws the OpenStreetMap roads and buildings of an area into a mask and renders it with the "
            "Pix2Pix generator into a georeferenced synthetic RGB GeoTIFF.\n\n"
            "Area: an extent (any CRS) or a polygon layer. Map data: a local OSM extract "
            "(.osm.pbf/.osm/.osm.bz2, offline; with no area set, the file's own extent is used), or, "
            "when no file is chosen, the Overpass API (online, at most 50 km²).\n"
            "Pixel size: metres per pixel (the model was trained at 1 m). Output CRS: a metric CRS, or "
            "empty for the area's UTM zone. Seed: the same seed gives an identical image. Model: a "
            ".safetensors/.pth generator, or empty for the shipped model. The optional mask output "
            "keeps the two-band mask (band 1 roads, band 2 buildings, 0/255); it is kept when the "
            "image part is cancelled.\n\n" + OSM_HELP)

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API name
        p.add_extent(self, "Area (extent)")
        p.add_aoi(self)
        p.add_osm_source(self)
        p.add_grid(self)
        p.add_render(self)
        p.add_output(self, "Synthetic imagery")
        p.add_mask_output(self)

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API name
        for ok, message in (p.check_source(self, parameters, context), p.check_checkpoint(self, parameters, context)):
            if not ok:
                return ok, message
        return super().checkParameterValues(parameters, context)

    def command(self, parameters, context, feedback):
        return self.generate_command(parameters, context, feedback, p.data_source(self, parameters, context))
