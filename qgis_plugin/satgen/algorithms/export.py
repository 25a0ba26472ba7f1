"""Layers → temporary GeoPackages the toolkit reads (``--roads``, ``--buildings``, ``--aoi``)."""

from __future__ import annotations

from typing import Dict, Optional

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
    QgsProcessingContext,
    QgsProcessingException,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
_FIELDS = {"roads": ("highway", "width", "lanes"), "buildings": ("building",), "aoi": ()}
_TYPES = {"roads": QgsWkbTypes.MultiLineString, "buildings": QgsWkbTypes.MultiPolygon, "aoi": QgsWkbTypes.MultiPolygon}
_DEFAULTS = {"highway": "road", "building": "yes"}
_LAYER_NAMES = {"roads": "road line", "buildings": "building polygon", "aoi": "area-of-interest"}


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
        raise QgsProcessingException(f"The {_LAYER_NAMES[kind]} layer has no CRS; set the layer's CRS and try again.")
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
