"""The parameters of the SatGen algorithms: names, declarations, the data source and checks.

Each algorithm declares its parameters with the ``add_*`` functions. Where the map data
come from is never a separate choice: :func:`data_source` infers it from the inputs that
are set (layers, else a local OSM file, else the Overpass API), so no combination of
controls can contradict another.
"""

from __future__ import annotations

import enum
import os
import re
from typing import Any, Dict, Optional, Tuple

from qgis.core import (
    NULL,
    QgsMapLayerType,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProject,
    QgsProviderRegistry,
    QgsWkbTypes,
)

from ..resources import tr

# Parameter names (the keys of processing.run's parameter dictionary).
EXTENT = "EXTENT"
AOI = "AOI"
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
BACKEND = "BACKEND"
PRECISION = "PRECISION"
OUTPUT = "OUTPUT"
MASK_OUTPUT = "MASK_OUTPUT"

DEVICES = ["auto", "cpu", "cuda", "mps"]
#: The toolkit's inference backends and precisions (``satgen render --backend/--precision``).
BACKENDS = ["auto", "torch", "openvino", "onnxruntime"]
PRECISIONS = ["auto", "fp32", "bf16", "fp16", "int8"]
#: The accepted window overlap in pixels (the toolkit's limit for its 256 px tiles).
MAX_OVERLAP_PX = 224
OSM_FILTER = "OpenStreetMap extracts (*.osm.pbf *.pbf *.osm *.osm.bz2);;All files (*.*)"
CHECKPOINT_FILTER = "Generator checkpoints (*.safetensors *.pth *.pt);;All files (*.*)"


class DataSource(enum.Enum):
    """Where the roads and buildings come from."""

    OVERPASS = "Overpass API"
    OSM_FILE = "local OSM file"
    LAYERS = "your layers"
    MASK = "mask raster"

    @property
    def reading_text(self) -> str:
        """The progress text while the features are read."""
        return {DataSource.OVERPASS: tr("Downloading OpenStreetMap features from the Overpass API…"),
                DataSource.OSM_FILE: tr("Reading the OpenStreetMap file…"),
                DataSource.LAYERS: tr("Reading your layers…"),
                DataSource.MASK: tr("Reading the mask…")}[self]


# -- declarations --------------------------------------------------------------------------

def add_extent(alg: QgsProcessingAlgorithm, description: str) -> None:
    alg.addParameter(QgsProcessingParameterExtent(EXTENT, tr(description), optional=True))


def add_aoi(alg: QgsProcessingAlgorithm) -> None:
    alg.addParameter(QgsProcessingParameterFeatureSource(
        AOI, tr("Area of interest (polygon layer, instead of an extent)"),
        [QgsProcessing.TypeVectorPolygon], optional=True))


def add_osm_source(alg: QgsProcessingAlgorithm) -> None:
    """The local OSM file (empty: download from Overpass) and the advanced Overpass URL."""
    alg.addParameter(QgsProcessingParameterFile(
        OSM_FILE, tr("Local OSM file (.osm.pbf, .osm, .osm.bz2; empty = download from the Overpass API)"),
        QgsProcessingParameterFile.File, optional=True, fileFilter=OSM_FILTER))
    add_advanced(alg, QgsProcessingParameterString(
        OVERPASS_URL, tr("Overpass API URL (default overpass-api.de)"), optional=True))


def add_layers(alg: QgsProcessingAlgorithm, suggest: bool = False) -> None:
    """Road and building layer pickers; with ``suggest`` the dialog starts with suitable project layers."""
    for name, description, kind in ((ROADS, "Road lines", QgsProcessing.TypeVectorLine),
                                    (BUILDINGS, "Building polygons", QgsProcessing.TypeVectorPolygon)):
        parameter = QgsProcessingParameterFeatureSource(name, tr(description), [kind], optional=True)
        layer_id = suggested_layer(name) if suggest else None
        if layer_id:
            parameter.setGuiDefaultValueOverride(layer_id)
        alg.addParameter(parameter)


def add_mask(alg: QgsProcessingAlgorithm) -> None:
    parameter = QgsProcessingParameterRasterLayer(MASK, tr("Mask raster (2 bands)"))
    layer_id = suggested_layer(MASK)
    if layer_id:
        parameter.setGuiDefaultValueOverride(layer_id)
    alg.addParameter(parameter)


def add_grid(alg: QgsProcessingAlgorithm) -> None:
    alg.addParameter(QgsProcessingParameterNumber(
        GSD, tr("Pixel size (metres)"), QgsProcessingParameterNumber.Double,
        defaultValue=1.0, minValue=0.05, maxValue=100.0))
    alg.addParameter(QgsProcessingParameterCrs(
        CRS, tr("Output CRS (metric; empty = UTM zone of the area)"), optional=True))


def add_render(alg: QgsProcessingAlgorithm) -> None:
    alg.addParameter(QgsProcessingParameterNumber(
        SEED, tr("Seed (same seed = identical image)"), QgsProcessingParameterNumber.Integer,
        defaultValue=0, minValue=0))
    alg.addParameter(QgsProcessingParameterFile(
        CHECKPOINT, tr("Generator model (empty = the shipped model)"),
        QgsProcessingParameterFile.File, optional=True, fileFilter=CHECKPOINT_FILTER))
    add_advanced(alg, QgsProcessingParameterNumber(
        OVERLAP, tr("Window overlap in pixels (empty = the model's)"),
        QgsProcessingParameterNumber.Integer, optional=True, minValue=0, maxValue=MAX_OVERLAP_PX))
    add_advanced(alg, QgsProcessingParameterEnum(DEVICE, tr("Compute device"), DEVICES, defaultValue=0))
    add_advanced(alg, QgsProcessingParameterEnum(
        BACKEND, tr("Inference backend (auto = the fastest installed, measured once)"), BACKENDS, defaultValue=0))
    add_advanced(alg, QgsProcessingParameterEnum(
        PRECISION, tr("Numeric precision (auto = bf16/fp16 where faster and accurate, else fp32)"), PRECISIONS,
        defaultValue=0))


def add_output(alg: QgsProcessingAlgorithm, description: str) -> None:
    alg.addParameter(QgsProcessingParameterRasterDestination(OUTPUT, tr(description)))


def add_mask_output(alg: QgsProcessingAlgorithm) -> None:
    alg.addParameter(QgsProcessingParameterRasterDestination(
        MASK_OUTPUT, tr("Mask (band 1 roads, band 2 buildings)"), optional=True, createByDefault=False))


def add_advanced(alg: QgsProcessingAlgorithm, parameter: QgsProcessingParameterDefinition) -> None:
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    alg.addParameter(parameter)


# -- suggested layers ------------------------------------------------------------------------

_HINTS = {ROADS: ("highway", re.compile(r"road|street|highway|tie|väylä|strasse|straße|rue|calle", re.I)),
          BUILDINGS: ("building", re.compile(r"build|house|rakennu|gebäude|bâti|bati|edific", re.I))}


def suggested_layer(name: str, project: Optional[QgsProject] = None) -> Optional[str]:
    """The id of the project layer a picker should start with, or ``None``.

    Roads/buildings: a line/polygon layer with a ``highway``/``building`` field or a
    name that says so, else the only layer of that geometry type. Mask: the first
    two-band raster layer.
    """
    layers = list((project or QgsProject.instance()).mapLayers().values())
    if name == MASK:
        rasters = [layer for layer in layers if layer.type() == QgsMapLayerType.RasterLayer and layer.isValid()]
        return next((layer.id() for layer in rasters if raster_path(layer)
                     and band_count(raster_path(layer), layer) == 2), None)
    geometry = QgsWkbTypes.LineGeometry if name == ROADS else QgsWkbTypes.PolygonGeometry
    candidates = [layer for layer in layers if layer.type() == QgsMapLayerType.VectorLayer and layer.isValid()
                  and layer.geometryType() == geometry]
    field, pattern = _HINTS[name]
    for layer in candidates:
        if field in [f.name().lower() for f in layer.fields()] or pattern.search(layer.name()):
            return layer.id()
    return candidates[0].id() if len(candidates) == 1 else None


def band_count(path: str, layer) -> int:
    """Bands in the file (QGIS counts a GeoTIFF's per-dataset mask as an extra alpha band)."""
    try:
        from osgeo import gdal

        dataset = gdal.Open(path)
        if dataset is not None:
            return dataset.RasterCount
    except ImportError:
        pass
    return layer.bandCount()


def raster_path(layer) -> str:
    """The local file of a raster layer ('' if it is not one)."""
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = parts.get("path") or layer.source()
    return path if os.path.isfile(path) else ""


# -- values and checks -----------------------------------------------------------------------

def has_value(parameters: Dict[str, Any], name: str) -> bool:
    value = parameters.get(name)
    return value is not None and value != "" and value != NULL


def has_extent(alg: QgsProcessingAlgorithm, parameters: Dict[str, Any], context: QgsProcessingContext) -> bool:
    if not has_value(parameters, EXTENT):
        return False
    rect = alg.parameterAsExtent(parameters, EXTENT, context)
    return not rect.isNull() and not rect.isEmpty()


def has_layers(parameters: Dict[str, Any]) -> bool:
    return has_value(parameters, ROADS) or has_value(parameters, BUILDINGS)


def data_source(alg: QgsProcessingAlgorithm, parameters: Dict[str, Any], context: QgsProcessingContext,
                layers_allowed: bool = False) -> DataSource:
    """Road/building layers if set (and allowed), else a local OSM file if set, else Overpass."""
    if layers_allowed and has_layers(parameters):
        return DataSource.LAYERS
    if alg.parameterAsFile(parameters, OSM_FILE, context):
        return DataSource.OSM_FILE
    return DataSource.OVERPASS


def check_source(alg: QgsProcessingAlgorithm, parameters: Dict[str, Any], context: QgsProcessingContext,
                 layers_allowed: bool = False) -> Tuple[bool, str]:
    """Checks of the area and map-data parameters (OpenStreetMap and mask algorithms)."""
    extent = has_extent(alg, parameters, context)
    if extent and has_value(parameters, AOI):
        return False, tr("Give either an extent or an area-of-interest layer, not both.")
    osm_file = alg.parameterAsFile(parameters, OSM_FILE, context)
    if layers_allowed and osm_file and has_layers(parameters):
        return False, tr("Give either a local OSM file or road/building layers, not both.")
    source = data_source(alg, parameters, context, layers_allowed)
    if source == DataSource.OSM_FILE and not os.path.isfile(osm_file):
        return False, tr("The OSM file {} does not exist.").format(osm_file)
    if source == DataSource.OVERPASS and not (extent or has_value(parameters, AOI)):
        alternatives = "a local OSM file or road/building layers" if layers_allowed else "a local OSM file"
        return False, tr("Downloading from the Overpass API needs an area: set the extent or an "
                         "area-of-interest polygon layer, or choose {}.").format(alternatives)
    return True, ""


def check_checkpoint(alg: QgsProcessingAlgorithm, parameters: Dict[str, Any],
                     context: QgsProcessingContext) -> Tuple[bool, str]:
    checkpoint = alg.parameterAsFile(parameters, CHECKPOINT, context)
    if checkpoint and not os.path.isfile(checkpoint):
        return False, tr("The model file {} does not exist.").format(checkpoint)
    return True, ""
