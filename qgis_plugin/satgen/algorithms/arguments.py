"""Parameter values → ``satgen`` command-line arguments.

Extents go as ``--bbox`` in EPSG:4326; layers as temporary GeoPackages in their own CRS
(see :mod:`.export`); everything else as the matching option.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingUtils,
    QgsRectangle,
)

from ..resources import tr
from .export import WGS84, export_layer
from .messages import label
from .parameters import (
    AOI,
    BACKEND,
    BACKENDS,
    BUILDINGS,
    CHECKPOINT,
    CRS,
    DEVICE,
    DEVICES,
    EXTENT,
    GSD,
    MASK,
    OSM_FILE,
    OVERLAP,
    OVERPASS_URL,
    PRECISION,
    PRECISIONS,
    ROADS,
    SEED,
    DataSource,
    has_extent,
    has_value,
)

Parameters = Dict[str, Any]


def extent_wgs84(alg: QgsProcessingAlgorithm, parameters: Parameters, context: QgsProcessingContext,
                 fallback_crs: Optional[QgsCoordinateReferenceSystem] = None) -> Optional[QgsRectangle]:
    """The EXTENT parameter in EPSG:4326, or ``None`` if unset.

    An extent given without a CRS is taken in ``fallback_crs``, else as degrees if it fits.
    """
    if not has_extent(alg, parameters, context):
        return None
    rect = alg.parameterAsExtent(parameters, EXTENT, context)
    crs = alg.parameterAsExtentCrs(parameters, EXTENT, context)
    if not crs.isValid():
        crs = fallback_crs if fallback_crs is not None and fallback_crs.isValid() else None
    if crs is None:
        if -180 <= rect.xMinimum() <= rect.xMaximum() <= 180 and -90 <= rect.yMinimum() <= rect.yMaximum() <= 90:
            crs = WGS84
        else:
            raise QgsProcessingException(tr("The extent has no CRS; give it as 'xmin,xmax,ymin,ymax [EPSG:code]'."))
    if crs == WGS84:
        return rect
    try:
        return QgsCoordinateTransform(crs, WGS84, context.transformContext()).transformBoundingBox(rect)
    except QgsCsException as err:
        raise QgsProcessingException(tr("Cannot convert the extent to longitude/latitude: {}").format(err)) from None


def bbox_args(alg: QgsProcessingAlgorithm, parameters: Parameters, context: QgsProcessingContext,
              fallback_crs: Optional[QgsCoordinateReferenceSystem] = None) -> List[str]:
    """``--bbox W,S,E,N`` (EPSG:4326) for the EXTENT parameter, or nothing if unset."""
    rect = extent_wgs84(alg, parameters, context, fallback_crs)
    if rect is None:
        return []
    corners = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
    return ["--bbox", ",".join(f"{v:.8f}" for v in corners)]


def area_args(alg: QgsProcessingAlgorithm, parameters: Parameters, context: QgsProcessingContext, feedback,
              fallback_crs: Optional[QgsCoordinateReferenceSystem] = None) -> List[str]:
    """``--bbox`` from EXTENT or ``--aoi FILE`` from the AOI layer (or nothing)."""
    if not has_value(parameters, AOI):
        return bbox_args(alg, parameters, context, fallback_crs)
    source = alg.parameterAsSource(parameters, AOI, context)
    if source is None:
        raise QgsProcessingException(alg.invalidSourceError(parameters, AOI))
    path = QgsProcessingUtils.generateTempFilename("satgen_aoi.gpkg")
    if not export_layer(source, path, "aoi", context, feedback):
        raise QgsProcessingException(tr("The area-of-interest layer has no polygons."))
    return ["--aoi", path]


def source_args(alg: QgsProcessingAlgorithm, parameters: Parameters, context: QgsProcessingContext, feedback,
                source: DataSource) -> List[str]:
    """The area and map-data options for a data source (see :func:`.parameters.data_source`)."""
    if source == DataSource.LAYERS:
        layers_crs = _layers_crs(alg, parameters, context)
        area = area_args(alg, parameters, context, feedback, layers_crs)
        return layer_args(alg, parameters, context, feedback) + area
    args = area_args(alg, parameters, context, feedback)
    url = alg.parameterAsString(parameters, OVERPASS_URL, context).strip()
    if source == DataSource.OSM_FILE:
        if url and feedback is not None:
            feedback.pushWarning(tr("The Overpass API URL is not used: the map data come from the local OSM file."))
        return args + ["--osm", alg.parameterAsFile(parameters, OSM_FILE, context)]
    return args + (["--overpass-url", url] if url else [])


def layer_args(alg: QgsProcessingAlgorithm, parameters: Parameters, context: QgsProcessingContext,
               feedback) -> List[str]:
    """``--roads``/``--buildings`` temporary GeoPackages of the layers, cut to EXTENT if set."""
    args: List[str] = []
    area = extent_wgs84(alg, parameters, context, _layers_crs(alg, parameters, context))
    for name, kind, option in ((ROADS, "roads", "--roads"), (BUILDINGS, "buildings", "--buildings")):
        if not has_value(parameters, name):
            continue
        source = alg.parameterAsSource(parameters, name, context)
        if source is None:
            raise QgsProcessingException(alg.invalidSourceError(parameters, name))
        path = QgsProcessingUtils.generateTempFilename(f"satgen_{kind}.gpkg")
        count = export_layer(source, path, kind, context, feedback, area)
        if feedback is not None:
            feedback.pushInfo(tr("{}: {} features").format(label(alg, name), count))
        args += [option, path]
    if not args:
        raise QgsProcessingException(tr("Choose a road line layer and/or a building polygon layer."))
    return args


def _layers_crs(alg: QgsProcessingAlgorithm, parameters: Parameters,
                context: QgsProcessingContext) -> QgsCoordinateReferenceSystem:
    """CRS of the first road/building layer (the fallback for an extent given without CRS)."""
    for name in (ROADS, BUILDINGS):
        if has_value(parameters, name):
            source = alg.parameterAsSource(parameters, name, context)
            if source is not None and source.sourceCrs().isValid():
                return source.sourceCrs()
    return QgsCoordinateReferenceSystem()


def grid_args(alg: QgsProcessingAlgorithm, parameters: Parameters, context: QgsProcessingContext) -> List[str]:
    args = ["--gsd", repr(alg.parameterAsDouble(parameters, GSD, context))]
    crs = alg.parameterAsCrs(parameters, CRS, context) if has_value(parameters, CRS) else None
    if crs is not None and crs.isValid():
        if crs.isGeographic():
            raise QgsProcessingException(tr("The output CRS {} is geographic (degrees); choose a projected CRS "
                                            "in metres, or leave it empty for UTM.")
                                         .format(crs.authid() or crs.description()))
        args += ["--crs", crs.authid() or crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)]
    return args


def render_args(alg: QgsProcessingAlgorithm, parameters: Parameters, context: QgsProcessingContext) -> List[str]:
    args = ["--seed", str(alg.parameterAsInt(parameters, SEED, context)),
            "--device", DEVICES[alg.parameterAsEnum(parameters, DEVICE, context)],
            "--backend", BACKENDS[alg.parameterAsEnum(parameters, BACKEND, context)],
            "--precision", PRECISIONS[alg.parameterAsEnum(parameters, PRECISION, context)]]
    if has_value(parameters, OVERLAP):
        args += ["--overlap", str(alg.parameterAsInt(parameters, OVERLAP, context))]
    checkpoint = alg.parameterAsFile(parameters, CHECKPOINT, context)
    if checkpoint:
        args += ["--checkpoint", checkpoint]
    return args


def output_path(alg: QgsProcessingAlgorithm, parameters: Parameters, name: str, context: QgsProcessingContext) -> str:
    """The GeoTIFF path of a raster destination ('' when the optional output is skipped)."""
    path = alg.parameterAsOutputLayer(parameters, name, context)
    if path and os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
        raise QgsProcessingException(tr("'{}' must be a GeoTIFF (.tif) file; got {}").format(label(alg, name), path))
    return path


def source_label(alg: QgsProcessingAlgorithm, parameters: Parameters, context: QgsProcessingContext,
                 source: DataSource) -> str:
    """A short name of where the data come from, for layer names: file, layer names or 'Overpass API'."""
    if source == DataSource.OSM_FILE:
        return os.path.basename(alg.parameterAsFile(parameters, OSM_FILE, context))
    if source == DataSource.MASK:
        layer = alg.parameterAsRasterLayer(parameters, MASK, context)
        return layer.name() if layer is not None else MASK
    if source == DataSource.LAYERS:
        given = [name for name in (ROADS, BUILDINGS) if has_value(parameters, name)]
        return " + ".join(_layer_name(alg, parameters, name, context) for name in given)
    return tr("Overpass API")


def _layer_name(alg: QgsProcessingAlgorithm, parameters: Parameters, name: str, context: QgsProcessingContext) -> str:
    layer = alg.parameterAsVectorLayer(parameters, name, context)
    return layer.name() if layer is not None else label(alg, name)
