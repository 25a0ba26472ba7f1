"""Shared parameters and conversions of the SatGen algorithms.

Each algorithm declares its parameters with the ``add_*`` helpers, turns them into
``satgen`` command-line options with the ``*_args`` helpers, and makes one
:func:`~satgen.runner.run_satgen` call. Layers are handed to the toolkit as temporary
GeoPackages in their own CRS; extents as ``--bbox`` in EPSG:4326.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Tuple

from qgis.core import (
    NULL,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureRequest,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication, QVariant

from .. import resources
from ..runner import run_satgen

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
DEVICES = ["auto", "cpu", "cuda", "mps"]
OSM_FILTER = "OpenStreetMap extracts (*.osm.pbf *.pbf *.osm *.osm.bz2);;All files (*.*)"
CHECKPOINT_FILTER = "Generator checkpoints (*.safetensors *.pth *.pt);;All files (*.*)"
OSM_HELP = ("Map data © OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright). "
            "The output is synthetic imagery, not a photograph.")


class SatGenAlgorithm(QgsProcessingAlgorithm):
    """Base of the SatGen algorithms: naming, help, and parameter helpers."""

    # Parameter names shared by the algorithms.
    EXTENT = "EXTENT"
    AOI = "AOI"
    SOURCE = "SOURCE"
    OSM_FILE = "OSM_FILE"
    OVERPASS_URL = "OVERPASS_URL"
    ROADS = "ROADS"
    BUILDINGS = "BUILDINGS"
    MASK = "MASK"
    GSD = "GSD"
    CRS = "CRS"
    SEED = "SEED"
    OVERLAP = "OVERLAP"
    CHECKPOINT = "CHECKPOINT"
    DEVICE = "DEVICE"
    OUTPUT = "OUTPUT"
    MASK_OUTPUT = "MASK_OUTPUT"

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("SatGen", text)

    def createInstance(self):
        return type(self)()

    def group(self) -> str:
        return self.tr("SatGen")

    def groupId(self) -> str:
        return "satgen"

    def icon(self):
        return resources.icon()

    # -- parameter declarations ------------------------------------------------------

    def add_extent(self, description: str, optional: bool = True) -> None:
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, self.tr(description), optional=optional))

    def add_aoi(self) -> None:
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.AOI, self.tr("Area of interest (polygon layer, instead of an extent)"),
            [QgsProcessing.TypeVectorPolygon], optional=True))

    def add_osm_source(self, options: List[str]) -> None:
        self.addParameter(QgsProcessingParameterEnum(
            self.SOURCE, self.tr("Map data source"), [self.tr(o) for o in options], defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(
            self.OSM_FILE, self.tr("Local OSM file (.osm.pbf, .osm, .osm.bz2)"),
            QgsProcessingParameterFile.File, optional=True, fileFilter=OSM_FILTER))
        url = QgsProcessingParameterString(self.OVERPASS_URL, self.tr("Overpass API URL (default overpass-api.de)"),
                                           optional=True)
        self.add_advanced(url)

    def add_layers(self) -> None:
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.ROADS, self.tr("Road lines"), [QgsProcessing.TypeVectorLine], optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.BUILDINGS, self.tr("Building polygons"), [QgsProcessing.TypeVectorPolygon], optional=True))

    def add_grid(self) -> None:
        self.addParameter(QgsProcessingParameterNumber(
            self.GSD, self.tr("Pixel size (metres)"), QgsProcessingParameterNumber.Double,
            defaultValue=1.0, minValue=0.05, maxValue=100.0))
        self.addParameter(QgsProcessingParameterCrs(
            self.CRS, self.tr("Output CRS (metric; empty = UTM zone of the area)"), optional=True))

    def add_render(self) -> None:
        self.addParameter(QgsProcessingParameterNumber(
            self.SEED, self.tr("Seed (same seed = identical image)"), QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterFile(
            self.CHECKPOINT, self.tr("Generator model (empty = the shipped model)"),
            QgsProcessingParameterFile.File, optional=True, fileFilter=CHECKPOINT_FILTER))
        self.add_advanced(QgsProcessingParameterNumber(
            self.OVERLAP, self.tr("Window overlap in pixels (empty = the model's)"),
            QgsProcessingParameterNumber.Integer, optional=True, minValue=0, maxValue=4095))
        self.add_advanced(QgsProcessingParameterEnum(
            self.DEVICE, self.tr("Compute device"), DEVICES, defaultValue=0))

    def add_output(self, description: str) -> None:
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr(description)))

    def add_mask_output(self) -> None:
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.MASK_OUTPUT, self.tr("Mask (band 1 roads, band 2 buildings)"), optional=True,
            createByDefault=False))

    def add_advanced(self, parameter: QgsProcessingParameterDefinition) -> None:
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(parameter)

    # -- parameter checks ------------------------------------------------------------

    def has_value(self, parameters: Dict[str, Any], name: str) -> bool:
        value = parameters.get(name)
        return value is not None and value != "" and value != NULL

    def has_extent(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> bool:
        if not self.has_value(parameters, self.EXTENT):
            return False
        rect = self.parameterAsExtent(parameters, self.EXTENT, context)
        return not rect.isNull() and not rect.isEmpty()

    def check_osm_source(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                         layers_option: bool = False) -> Tuple[bool, str]:
        """Checks of the area + map-data parameters (algorithms 1 and 4)."""
        source = self.parameterAsEnum(parameters, self.SOURCE, context)
        osm_file = self.parameterAsFile(parameters, self.OSM_FILE, context)
        has_area = self.has_extent(parameters, context) or self.has_value(parameters, self.AOI)
        if self.has_extent(parameters, context) and self.has_value(parameters, self.AOI):
            return False, self.tr("Give either an extent or an area-of-interest layer, not both.")
        if source == 0:
            if not has_area:
                return False, self.tr("Downloading from the Overpass API needs an area: set the extent "
                                      "or an area-of-interest polygon layer.")
            if osm_file:
                return False, self.tr("An OSM file is set but the data source is the Overpass API; "
                                      "choose 'Local OSM file' as the data source or clear the file.")
        elif source == 1:
            if not osm_file:
                return False, self.tr("Choose the local OSM file (.osm.pbf, .osm or .osm.bz2).")
            if not os.path.isfile(osm_file):
                return False, self.tr("The OSM file {} does not exist.").format(osm_file)
        if layers_option:
            has_layers = self.has_value(parameters, self.ROADS) or self.has_value(parameters, self.BUILDINGS)
            if source == 2 and not has_layers:
                return False, self.tr("Choose a road line layer and/or a building polygon layer.")
            if source != 2 and has_layers:
                return False, self.tr("Road/building layers are set but the data source is not "
                                      "'Road and building layers'; change the data source or clear the layers.")
        return True, ""

    def check_checkpoint(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> Tuple[bool, str]:
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        if checkpoint and not os.path.isfile(checkpoint):
            return False, self.tr("The model file {} does not exist.").format(checkpoint)
        return True, ""

    # -- conversions to command-line options ---------------------------------------------

    def bbox_args(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                  fallback_crs: Optional[QgsCoordinateReferenceSystem] = None) -> List[str]:
        """``--bbox W,S,E,N`` (EPSG:4326) for the EXTENT parameter, or nothing if unset."""
        rect = self.extent_wgs84(parameters, context, fallback_crs)
        if rect is None:
            return []
        return ["--bbox", ",".join(f"{v:.8f}" for v in (rect.xMinimum(), rect.yMinimum(),
                                                         rect.xMaximum(), rect.yMaximum()))]

    def extent_wgs84(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                     fallback_crs: Optional[QgsCoordinateReferenceSystem] = None) -> Optional[QgsRectangle]:
        if not self.has_extent(parameters, context):
            return None
        rect = self.parameterAsExtent(parameters, self.EXTENT, context)
        crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        if not crs.isValid():
            crs = fallback_crs if fallback_crs is not None and fallback_crs.isValid() else None
        if crs is None:
            if -180 <= rect.xMinimum() <= rect.xMaximum() <= 180 and -90 <= rect.yMinimum() <= rect.yMaximum() <= 90:
                crs = WGS84
            else:
                raise QgsProcessingException(self.tr("The extent has no CRS; give it as "
                                                     "'xmin,xmax,ymin,ymax [EPSG:code]'."))
        if crs == WGS84:
            return rect
        try:
            return QgsCoordinateTransform(crs, WGS84, context.transformContext()).transformBoundingBox(rect)
        except QgsCsException as err:
            raise QgsProcessingException(
                self.tr("Cannot convert the extent to longitude/latitude: {}").format(err)) from None

    def area_args(self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback,
                  fallback_crs: Optional[QgsCoordinateReferenceSystem] = None) -> List[str]:
        """``--bbox`` from EXTENT or ``--aoi FILE`` from the AOI layer (or nothing)."""
        if self.has_value(parameters, self.AOI):
            source = self.parameterAsSource(parameters, self.AOI, context)
            if source is None:
                raise QgsProcessingException(self.invalidSourceError(parameters, self.AOI))
            path = QgsProcessingUtils.generateTempFilename("satgen_aoi.gpkg")
            count = export_layer(source, path, "aoi", context, feedback)
            if not count:
                raise QgsProcessingException(self.tr("The area-of-interest layer has no polygons."))
            return ["--aoi", path]
        return self.bbox_args(parameters, context, fallback_crs)

    def osm_args(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> List[str]:
        source = self.parameterAsEnum(parameters, self.SOURCE, context)
        if source == 1:
            return ["--osm", self.parameterAsFile(parameters, self.OSM_FILE, context)]
        url = self.parameterAsString(parameters, self.OVERPASS_URL, context).strip()
        return ["--overpass-url", url] if source == 0 and url else []

    def layer_args(self, parameters: Dict[str, Any], context: QgsProcessingContext, feedback) -> List[str]:
        """``--roads``/``--buildings`` temp GeoPackages of the layers, cut to EXTENT if set."""
        args: List[str] = []
        for name, kind, option in ((self.ROADS, "roads", "--roads"), (self.BUILDINGS, "buildings", "--buildings")):
            if not self.has_value(parameters, name):
                continue
            source = self.parameterAsSource(parameters, name, context)
            if source is None:
                raise QgsProcessingException(self.invalidSourceError(parameters, name))
            area = self.extent_wgs84(parameters, context, self.layers_crs(parameters, context))
            path = QgsProcessingUtils.generateTempFilename(f"satgen_{kind}.gpkg")
            count = export_layer(source, path, kind, context, feedback, area)
            feedback.pushInfo(self.tr("{}: {} features handed to the toolkit").format(kind, count))
            args += [option, path]
        if not args:
            raise QgsProcessingException(self.tr("Choose a road line layer and/or a building polygon layer."))
        return args

    def layers_crs(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> QgsCoordinateReferenceSystem:
        """CRS of the first road/building layer (the fallback for an extent given without CRS)."""
        for name in (self.ROADS, self.BUILDINGS):
            if self.has_value(parameters, name):
                source = self.parameterAsSource(parameters, name, context)
                if source is not None and source.sourceCrs().isValid():
                    return source.sourceCrs()
        return QgsCoordinateReferenceSystem()

    def grid_args(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> List[str]:
        args = ["--gsd", repr(self.parameterAsDouble(parameters, self.GSD, context))]
        crs = self.parameterAsCrs(parameters, self.CRS, context) if self.has_value(parameters, self.CRS) else None
        if crs is not None and crs.isValid():
            if crs.isGeographic():
                raise QgsProcessingException(self.tr("The output CRS {} is geographic (degrees); choose a "
                                                     "projected CRS in metres, or leave it empty for UTM.")
                                             .format(crs.authid() or crs.description()))
            args += ["--crs", crs.authid() or crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)]
        return args

    def render_args(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> List[str]:
        args = ["--seed", str(self.parameterAsInt(parameters, self.SEED, context)),
                "--device", DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]]
        if self.has_value(parameters, self.OVERLAP):
            args += ["--overlap", str(self.parameterAsInt(parameters, self.OVERLAP, context))]
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        if checkpoint:
            args += ["--checkpoint", checkpoint]
        return args

    def output_path(self, parameters: Dict[str, Any], name: str, context: QgsProcessingContext) -> str:
        path = self.parameterAsOutputLayer(parameters, name, context)
        if path and os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(self.tr("{} must be a GeoTIFF (.tif) file; got {}").format(name, path))
        return path

    def run_cli(self, command: str, args: List[str], feedback, outputs: List[str]) -> None:
        try:
            run_satgen(command, args, feedback, outputs)
        except QgsProcessingException as err:
            raise QgsProcessingException(_with_parameter_names(str(err), self)) from None


#: Toolkit command-line options and the algorithm parameters that set them.
_OPTION_PARAMETERS = {
    "--bbox": "EXTENT", "--aoi": "AOI", "--osm": "OSM_FILE", "--roads": "ROADS", "--buildings": "BUILDINGS",
    "--gsd": "GSD", "--crs": "CRS", "--checkpoint": "CHECKPOINT", "--seed": "SEED", "--overlap": "OVERLAP",
    "--device": "DEVICE", "--overpass-url": "OVERPASS_URL", "--mask-out": "MASK_OUTPUT", "--output": "OUTPUT",
}


def _with_parameter_names(message: str, algorithm: QgsProcessingAlgorithm) -> str:
    """Append which parameters the CLI options named in a toolkit error message are."""
    names = []
    for option in dict.fromkeys(re.findall(r"--[a-z][a-z0-9-]*", message)):
        definition = algorithm.parameterDefinition(_OPTION_PARAMETERS.get(option, ""))
        if definition is not None:
            names.append(f"{option} = '{definition.description()}'")
    return f"{message} (in QGIS: {'; '.join(names)})" if names else message


_FIELDS = {"roads": ("highway", "width", "lanes"), "buildings": ("building",), "aoi": ()}
_TYPES = {"roads": QgsWkbTypes.MultiLineString, "buildings": QgsWkbTypes.MultiPolygon, "aoi": QgsWkbTypes.MultiPolygon}
_DEFAULTS = {"highway": "road", "building": "yes"}


def export_layer(source, path: str, kind: str, context: QgsProcessingContext, feedback,
                 area_wgs84: Optional[QgsRectangle] = None) -> int:
    """Write ``source`` to a GeoPackage in its own CRS as the toolkit reads it; return the count.

    Only the ``highway``/``width``/``lanes`` (roads) or ``building`` (buildings) attributes are
    kept; features without them get ``highway=road`` / ``building=yes`` so that every
    feature of a layer the user calls roads is drawn as a road. Geometries are made 2-D,
    linear and multi-part. With ``area_wgs84`` only features touching that area are written.
    """
    crs = source.sourceCrs()
    if not crs.isValid():
        raise QgsProcessingException(f"The {kind} layer has no CRS; set the layer's CRS and try again.")
    names = _FIELDS[kind]
    fields = QgsFields()
    for name in names:
        fields.append(QgsField(name, QVariant.String))
    source_fields = {f.name().lower(): i for i, f in enumerate(source.fields())}
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = kind
    options.fileEncoding = "UTF-8"
    writer = QgsVectorFileWriter.create(path, fields, _TYPES[kind], crs, context.transformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(f"Cannot write the temporary {kind} file {path}: {writer.errorMessage()}")
    request = QgsFeatureRequest()
    if area_wgs84 is not None:
        try:
            request.setFilterRect(QgsCoordinateTransform(WGS84, crs, context.transformContext())
                                  .transformBoundingBox(area_wgs84))
        except QgsCsException:
            pass  # the toolkit cuts to the area anyway
    count = 0
    try:
        for feature in source.getFeatures(request):
            if feedback is not None and feedback.isCanceled():
                raise QgsProcessingException("Canceled by the user; no output was written.")
            geometry = _plain_geometry(feature.geometry())
            if geometry is None:
                continue
            out = QgsFeature(fields)
            out.setGeometry(geometry)
            out.setAttributes([_value(feature, source_fields, name) for name in names])
            if not writer.addFeature(out):
                raise QgsProcessingException(f"Cannot write the temporary {kind} file {path}: {writer.errorMessage()}")
            count += 1
    finally:
        del writer  # closes the file
    return count


def _value(feature: QgsFeature, source_fields: Dict[str, int], name: str) -> Optional[str]:
    index = source_fields.get(name)
    value = feature.attribute(index) if index is not None else None
    if value is None or value == NULL or str(value).strip() == "":
        return _DEFAULTS.get(name)
    return str(value)


def _plain_geometry(geometry: QgsGeometry) -> Optional[QgsGeometry]:
    if geometry is None or geometry.isNull() or geometry.isEmpty():
        return None
    part = geometry.constGet().clone()
    if QgsWkbTypes.isCurvedType(part.wkbType()):
        part = part.segmentize()
    part.dropZValue()
    part.dropMValue()
    plain = QgsGeometry(part)
    plain.convertToMultiType()
    return plain
