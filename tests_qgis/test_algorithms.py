"""The algorithms end to end in headless QGIS, running the real toolkit CLI with a tiny model."""

from __future__ import annotations

import os
import time

import numpy as np
import processing
import pytest
from conftest import LAYERS, write_utm_raster
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
MERCATOR = QgsCoordinateReferenceSystem("EPSG:3857")
ROAD_WIDTH_M = 6.0  # satgen's width for highway=residential and for roads without a class


def _transform(source, target):
    return QgsCoordinateTransform(source, target, QgsProject.instance().transformContext())


def _centre():
    """Web Mercator point near 26.95E 60.53N (Karhula, Kotka)."""
    return _transform(WGS84, MERCATOR).transform(QgsPointXY(26.95, 60.53))


@pytest.fixture(scope="module")
def drawn_layers():
    """Memory layers as a user would draw them: EPSG:3857, roads with and without a class."""
    c = _centre()
    cx, cy = c.x(), c.y()
    roads = QgsVectorLayer("LineString?crs=EPSG:3857&field=highway:string&field=name:string", "roads", "memory")
    road_lines = {
        "residential": f"LineString ({cx - 320} {cy}, {cx + 320} {cy})",  # E-W through the centre
        None: f"LineString ({cx + 120} {cy - 320}, {cx + 120} {cy + 320})",  # N-S, no class → road
    }
    features = []
    for highway, wkt in road_lines.items():
        feature = QgsFeature(roads.fields())
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        feature.setAttributes([highway, "drawn"])
        features.append(feature)
    assert roads.dataProvider().addFeatures(features)[0]
    buildings = QgsVectorLayer("Polygon?crs=EPSG:3857", "buildings", "memory")
    squares = [(cx - 200, cy + 120), (cx - 60, cy - 160), (cx + 220, cy + 200)]
    blocks = []
    for x, y in squares:
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(x - 30, y - 30, x + 30, y + 30)))
        blocks.append(feature)
    assert buildings.dataProvider().addFeatures(blocks)[0]
    LAYERS.extend([roads, buildings])
    yield {"roads": roads, "buildings": buildings, "road_lines": road_lines, "squares": squares, "centre": (cx, cy)}


def _raster(path):
    layer = QgsRasterLayer(str(path), os.path.basename(str(path)))
    assert layer.isValid(), f"{path} does not load as a raster layer"
    LAYERS.append(layer)
    return layer


def _pixel_centres(path):
    """Band arrays and pixel-centre coordinates of a GeoTIFF (GDAL)."""
    dataset = gdal.Open(str(path))
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    bands = [dataset.GetRasterBand(i + 1).ReadAsArray() for i in range(dataset.RasterCount)]
    rows, cols = np.mgrid[0:dataset.RasterYSize, 0:dataset.RasterXSize]
    return bands, x0 + (cols + 0.5) * dx, y0 + (rows + 0.5) * dy, abs(dx)


def _distance_to_lines(x, y, lines):
    """Distance of points to polylines [(N, 2) arrays], vectorised."""
    best = np.full(x.shape, np.inf)
    for line in lines:
        for (ax, ay), (bx, by) in zip(line[:-1], line[1:]):
            vx, vy = bx - ax, by - ay
            t = np.clip(((x - ax) * vx + (y - ay) * vy) / (vx * vx + vy * vy), 0, 1)
            best = np.minimum(best, np.hypot(x - (ax + t * vx), y - (ay + t * vy)))
    return best


def test_vector_layers_to_imagery_and_mask(drawn_layers, tiny_checkpoint, tmp_path):
    cx, cy = drawn_layers["centre"]
    extent = QgsRectangle(cx - 250, cy - 250, cx + 250, cy + 250)
    output, mask = tmp_path / "image.tif", tmp_path / "mask.tif"
    progress = []
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(progress.append)
    results = processing.run("satgen:generatefromvector", {
        "ROADS": drawn_layers["roads"], "BUILDINGS": drawn_layers["buildings"],
        "EXTENT": f"{extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},{extent.yMaximum()} [EPSG:3857]",
        "GSD": 1.0, "CRS": "EPSG:3067", "SEED": 7, "CHECKPOINT": tiny_checkpoint, "DEVICE": 1,
        "BACKEND": 1, "PRECISION": 1, "OUTPUT": str(output), "MASK_OUTPUT": str(mask),
    }, feedback=feedback)
    assert results["OUTPUT"] == str(output) and results["MASK_OUTPUT"] == str(mask)
    assert progress and progress[-1] == 100 and progress == sorted(progress)
    tags = gdal.Open(str(output)).GetMetadata()
    assert (tags["BACKEND"], tags["PRECISION"]) == ("torch", "fp32")  # the advanced parameters reach the toolkit

    target = QgsCoordinateReferenceSystem("EPSG:3067")
    expected = _transform(MERCATOR, target).transformBoundingBox(extent)
    image = _raster(output)
    assert gdal.Open(str(output)).RasterCount == 3
    for layer in (image, _raster(mask)):
        assert layer.crs().authid() == "EPSG:3067"
        got = layer.extent()
        pixel = layer.rasterUnitsPerPixelX()
        assert pixel == pytest.approx(1.0)
        for a, b in ((got.xMinimum(), expected.xMinimum()), (got.xMaximum(), expected.xMaximum()),
                     (got.yMinimum(), expected.yMinimum()), (got.yMaximum(), expected.yMaximum())):
            assert abs(a - b) <= 2 * pixel, (got.toString(), expected.toString())

    # Mask: roads exactly where drawn, buildings in the squares (sampled through QGIS).
    to_mask = _transform(MERCATOR, target)
    provider = _raster(mask).dataProvider()

    def sample(x, y, band):
        value, ok = provider.sample(to_mask.transform(QgsPointXY(x, y)), band)
        assert ok
        return value

    assert sample(cx - 150, cy, 1) == 255  # on the E-W road (3857 metres ≈ 0.49 m on the ground)
    assert sample(cx + 120, cy + 150, 1) == 255  # on the unclassified N-S road
    assert sample(cx - 150, cy + 60, 1) == 0  # ~30 m off the road
    for x, y in drawn_layers["squares"]:
        if extent.contains(QgsPointXY(x, y)):
            assert sample(x, y, 2) == 255 and sample(x, y, 1) == 0
    assert sample(cx - 150, cy - 80, 2) == 0

    # Whole band 1: every road pixel lies on a drawn road, every pixel on a road centreline is road.
    (roads_band, _), xs, ys, gsd = _pixel_centres(mask)
    lines = []
    for wkt in drawn_layers["road_lines"].values():
        geometry = QgsGeometry.fromWkt(wkt)
        geometry.densifyByDistance(10)
        geometry.transform(to_mask)
        lines.append(np.array([(p.x(), p.y()) for p in geometry.asPolyline()]))
    distance = _distance_to_lines(xs, ys, lines)
    assert (roads_band == 255).sum() > 500
    assert distance[roads_band == 255].max() <= ROAD_WIDTH_M / 2 + 1.5 * gsd
    assert (roads_band[distance <= 1.0] == 255).all()


def test_rasterize_layers_auto_crs(drawn_layers, tmp_path):
    output = tmp_path / "mask.tif"
    processing.run("satgen:rasterizemask", {
        "ROADS": drawn_layers["roads"], "BUILDINGS": drawn_layers["buildings"],
        "GSD": 2.0, "OUTPUT": str(output),
    })
    layer = _raster(output)
    assert layer.crs().authid() == "EPSG:32635" and gdal.Open(str(output)).RasterCount == 2
    # No extent: the layers' extent (roads and buildings together).
    layers_extent = QgsRectangle(drawn_layers["roads"].extent())
    layers_extent.combineExtentWith(drawn_layers["buildings"].extent())
    expected = _transform(MERCATOR, layer.crs()).transformBoundingBox(layers_extent)
    got = layer.extent()
    assert abs(got.width() - expected.width()) <= 4 and abs(got.height() - expected.height()) <= 4
    assert got.intersects(expected) and got.buffered(4).contains(expected)


def test_mask_raster_to_imagery(drawn_layers, tiny_checkpoint, tmp_path):
    mask = processing.run("satgen:rasterizemask", {
        "ROADS": drawn_layers["roads"], "GSD": 2.0, "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    assert mask.endswith(".tif") and os.path.isfile(mask)
    output = tmp_path / "image.tif"
    processing.run("satgen:generatefrommask", {
        "MASK": str(mask), "CHECKPOINT": tiny_checkpoint, "DEVICE": 1, "OUTPUT": str(output)})
    image, source = _raster(output), _raster(mask)
    assert gdal.Open(str(output)).RasterCount == 3 and image.crs() == source.crs()
    assert image.extent() == source.extent()
    assert (image.width(), image.height()) == (source.width(), source.height())


def test_mask_raster_rejects_wrong_band_count(tiny_checkpoint, tmp_path):
    path = write_utm_raster(tmp_path / "rgb.tif", 3)
    with pytest.raises(QgsProcessingException, match="has 3 band"):
        processing.run("satgen:generatefrommask", {"MASK": str(path), "OUTPUT": str(tmp_path / "o.tif")})


def test_toolkit_error_line_is_reported(tmp_path):
    mask = write_utm_raster(tmp_path / "mask.tif", 2)
    bogus = tmp_path / "not-a-model.safetensors"
    bogus.write_bytes(b"this is not a checkpoint")
    output = tmp_path / "o.tif"
    with pytest.raises(QgsProcessingException, match=r"^Error: ") as caught:
        processing.run("satgen:generatefrommask", {"MASK": str(mask), "CHECKPOINT": str(bogus),
                                                   "DEVICE": 1, "OUTPUT": str(output)})
    assert "not-a-model" in str(caught.value)
    assert not output.exists()


def test_osm_file_to_imagery(sample_osm, tiny_checkpoint, tmp_path):
    output = tmp_path / "kotka.tif"
    processing.run("satgen:generatefromosm", {
        "EXTENT": "26.945,26.953,60.528,60.532 [EPSG:4326]", "OSM_FILE": sample_osm,
        "GSD": 1.0, "CHECKPOINT": tiny_checkpoint, "DEVICE": 1, "OUTPUT": str(output),
    })
    layer = _raster(output)
    assert layer.crs().authid() == "EPSG:32635" and gdal.Open(str(output)).RasterCount == 3
    expected = _transform(WGS84, layer.crs()).transformBoundingBox(QgsRectangle(26.945, 60.528, 26.953, 60.532))
    got = layer.extent()
    assert abs(got.width() - expected.width()) <= 2 and abs(got.height() - expected.height()) <= 2
    assert gdal.Info(str(output), format="json")["bands"][0]["type"] == "Byte"


def test_cancel_leaves_no_output(sample_osm, tiny_checkpoint, tmp_path):
    output, mask = tmp_path / "big.tif", tmp_path / "big-mask.tif"
    feedback = QgsProcessingFeedback()
    seen = []

    def cancel_on_first_progress(value):
        seen.append(value)
        feedback.cancel()

    feedback.progressChanged.connect(cancel_on_first_progress)
    started = time.monotonic()
    # ~2.2 × 2.2 km at 0.5 m: a 4400 px mask and hundreds of windows — far from done at the first update.
    with pytest.raises(QgsProcessingException, match="Canceled"):
        processing.run("satgen:generatefromosm", {
            "EXTENT": "26.93,26.97,60.52,60.54 [EPSG:4326]", "OSM_FILE": sample_osm,
            "GSD": 0.5, "CHECKPOINT": tiny_checkpoint, "DEVICE": 1,
            "OUTPUT": str(output), "MASK_OUTPUT": str(mask),
        }, feedback=feedback)
    assert seen and seen[0] < 100
    assert time.monotonic() - started < 60
    assert not output.exists() and not mask.exists()
    assert sorted(os.listdir(tmp_path)) == []  # no .partial files, no satgen-* scratch folders


def test_rasterize_osm_file_within_aoi_layer(sample_osm, tmp_path):
    """AOI polygon layer (EPSG:3067 triangle) + local OSM file → mask valid only inside the triangle."""
    to_tm35 = _transform(WGS84, QgsCoordinateReferenceSystem("EPSG:3067"))
    corners = [to_tm35.transform(QgsPointXY(x, y)) for x, y in ((26.944, 60.527), (26.956, 60.527), (26.944, 60.533))]
    aoi = QgsVectorLayer("Polygon?crs=EPSG:3067", "aoi", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromPolygonXY([corners + corners[:1]]))
    assert aoi.dataProvider().addFeatures([feature])[0]
    LAYERS.append(aoi)
    output = tmp_path / "aoi-mask.tif"
    processing.run("satgen:rasterizemask", {
        "AOI": aoi, "OSM_FILE": sample_osm, "GSD": 2.0, "OUTPUT": str(output)})
    layer = _raster(output)
    assert layer.crs().authid() == "EPSG:32635"
    dataset = gdal.Open(str(output))
    valid = dataset.GetRasterBand(1).GetMaskBand().ReadAsArray()
    height, width = valid.shape
    assert valid[height - 3, 2] == 255  # south-west corner: inside the triangle
    assert valid[2, width - 3] == 0  # north-east corner: outside
    assert 0.35 < (valid == 255).mean() < 0.65  # about half of the bounding box
    assert (dataset.GetRasterBand(1).ReadAsArray()[valid == 255] == 255).any()  # roads inside
