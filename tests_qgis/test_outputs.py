"""Outputs as a user gets them: loaded, styled and named; tags; warnings; kept masks; closed pipes."""

from __future__ import annotations

import gc
import warnings

import processing
import pytest
from conftest import LAYERS, Recorder
from osgeo import gdal
from processing.gui.Postprocessing import handleAlgorithmResults
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

from satgen import runner

# Two crossing roads and one building near 26.95E 60.53N, in EPSG:3067 (metres).
CENTRE = (493000.0, 6711000.0)


@pytest.fixture(scope="module")
def own_layers():
    cx, cy = CENTRE
    roads = QgsVectorLayer("LineString?crs=EPSG:3067", "my roads", "memory")
    features = []
    for wkt in (f"LineString ({cx - 100} {cy}, {cx + 100} {cy})", f"LineString ({cx} {cy - 100}, {cx} {cy + 100})"):
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        features.append(feature)
    assert roads.dataProvider().addFeatures(features)[0]
    buildings = QgsVectorLayer("Polygon?crs=EPSG:3067", "my houses", "memory")
    house = QgsFeature()
    house.setGeometry(QgsGeometry.fromRect(QgsRectangle(cx + 30, cy + 30, cx + 70, cy + 70)))
    assert buildings.dataProvider().addFeatures([house])[0]
    LAYERS.extend([roads, buildings])
    return roads, buildings


def _dialog_run(algorithm, parameters, load):
    """Run as the algorithm dialog does: outputs in ``load`` have their "Open output file" box ticked."""
    project = QgsProject.instance()
    parameters = {name: QgsProcessingOutputLayerDefinition(value, project) if name in load else value
                  for name, value in parameters.items()}
    context = QgsProcessingContext()
    context.setProject(project)
    before = set(project.mapLayers())
    results = processing.run(algorithm, parameters, context=context, onFinish=handleAlgorithmResults)
    added = [project.mapLayer(i) for i in set(project.mapLayers()) - before]
    return results, {layer.source(): layer for layer in added}


def _colours(layer, points):
    """RGBA of the rendered layer at map points (the map canvas's renderer)."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(layer.width(), layer.height()))
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image, extent = job.renderedImage(), layer.extent()
    colours = []
    for x, y in points:
        col = int((x - extent.xMinimum()) / extent.width() * image.width())
        row = int((extent.yMaximum() - y) / extent.height() * image.height())
        colours.append(image.pixelColor(col, row).getRgb())
    return colours


def test_mask_output_is_loaded_styled_and_named(own_layers, tiny_checkpoint, tmp_path):
    """Item 16: the mask loads with the image even when only the image's box is ticked (a typed
    path), shows roads red, buildings green, the rest transparent; names say source and seed."""
    roads, buildings = own_layers
    mask_path = str(tmp_path / "typed-mask.tif")
    common = {"ROADS": roads, "BUILDINGS": buildings, "GSD": 1.0, "CHECKPOINT": tiny_checkpoint, "DEVICE": 1}
    results, added = _dialog_run("satgen:generatefromvector", {
        **common, "SEED": 7, "OUTPUT": "TEMPORARY_OUTPUT", "MASK_OUTPUT": mask_path}, load={"OUTPUT"})
    assert set(added) == {results["OUTPUT"], mask_path}
    image, mask = added[results["OUTPUT"]], added[mask_path]
    assert image.name() == "Synthetic imagery (my roads + my houses, seed 7)"
    cx, cy = CENTRE
    road, house, empty = (cx - 50, cy), (cx + 50, cy + 50), (cx - 50, cy - 50)
    assert _colours(mask, [road, house, empty]) == [(255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 0, 0)]

    results, added = _dialog_run("satgen:generatefromvector", {
        **common, "SEED": 8, "OUTPUT": "TEMPORARY_OUTPUT", "MASK_OUTPUT": "TEMPORARY_OUTPUT"}, load={"OUTPUT"})
    names = sorted(layer.name() for layer in added.values())
    assert names == ["Mask (my roads + my houses)", "Synthetic imagery (my roads + my houses, seed 8)"]
    QgsProject.instance().removeAllMapLayers()


def test_rasterized_mask_is_styled(own_layers, tmp_path):
    roads, buildings = own_layers
    results, added = _dialog_run("satgen:rasterizemask", {
        "ROADS": roads, "BUILDINGS": buildings, "GSD": 2.0, "OUTPUT": "TEMPORARY_OUTPUT"}, load={"OUTPUT"})
    mask = added[results["OUTPUT"]]
    assert mask.name() == "Mask (my roads + my houses)"
    cx, cy = CENTRE
    assert _colours(mask, [(cx, cy - 50), (cx + 50, cy + 50), (cx + 50, cy - 50)]) == [
        (255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 0, 0)]
    QgsProject.instance().removeAllMapLayers()


def test_own_layers_carry_no_osm_attribution(own_layers, tiny_checkpoint, tmp_path):
    """Item 19: an image made only from the user's layers does not credit OpenStreetMap."""
    roads, buildings = own_layers
    output, mask = tmp_path / "own.tif", tmp_path / "own-mask.tif"
    processing.run("satgen:generatefromvector", {
        "ROADS": roads, "BUILDINGS": buildings, "GSD": 2.0, "CHECKPOINT": tiny_checkpoint, "DEVICE": 1,
        "OUTPUT": str(output), "MASK_OUTPUT": str(mask)})
    for path in (output, mask):
        tags = gdal.Open(str(path)).GetMetadata()
        assert "© OpenStreetMap contributors" not in tags.get("ATTRIBUTION", ""), (path, tags)


def test_osm_output_keeps_osm_attribution(sample_osm, tmp_path):
    output = tmp_path / "osm-mask.tif"
    processing.run("satgen:rasterizemask", {"EXTENT": "26.945,26.953,60.528,60.532 [EPSG:4326]",
                                            "OSM_FILE": sample_osm, "GSD": 4.0, "OUTPUT": str(output)})
    assert "© OpenStreetMap contributors" in gdal.Open(str(output)).GetMetadata()["ATTRIBUTION"]


def test_extent_outside_the_osm_file_is_reported_prominently(sample_osm, tmp_path):
    """Item 20: an area with no features in the file is reported in the log as an error-level line."""
    feedback = Recorder()
    output = tmp_path / "nothing.tif"
    try:  # refusing the run outright is the other acceptable answer
        processing.run("satgen:rasterizemask", {"EXTENT": "24.94,24.95,60.16,60.17 [EPSG:4326]",
                                                "OSM_FILE": sample_osm, "GSD": 4.0, "OUTPUT": str(output)},
                       feedback=feedback)
    except QgsProcessingException as err:
        assert "no roads" in str(err).lower() or "no features" in str(err).lower(), err
        assert not output.exists()
        return
    shown = [text for text, fatal in feedback.errors if not fatal]
    assert any("no roads and no buildings" in text for text in shown), feedback.errors + feedback.warnings


def test_finished_mask_is_kept_when_the_image_is_cancelled(sample_osm, tiny_checkpoint, tmp_path):
    """Item 21: cancelling during rendering keeps the finished mask the user asked for, not the image."""
    output, mask = tmp_path / "image.tif", tmp_path / "mask.tif"
    feedback = QgsProcessingFeedback()
    stages = []

    def cancel_while_rendering(value):
        if value > 15:  # the render stage of generate runs from 15 to 100 %
            stages.append(value)
            feedback.cancel()

    feedback.progressChanged.connect(cancel_while_rendering)
    with pytest.raises(QgsProcessingException, match="Canceled") as caught:
        processing.run("satgen:generatefromosm", {
            "EXTENT": "26.93,26.97,60.52,60.54 [EPSG:4326]", "OSM_FILE": sample_osm, "GSD": 0.5,
            "CHECKPOINT": tiny_checkpoint, "DEVICE": 1, "OUTPUT": str(output), "MASK_OUTPUT": str(mask)},
            feedback=feedback)
    assert stages
    assert not output.exists()
    assert str(mask) in str(caught.value)
    dataset = gdal.Open(str(mask))
    assert dataset.RasterCount == 2 and dataset.GetRasterBand(1).ReadAsArray().max() == 255
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


def test_runner_keeps_an_output_finished_before_the_cancel(fake_toolkit, tmp_path):
    mask, image = tmp_path / "mask.tif", tmp_path / "image.tif"
    fake_toolkit(f"open({str(mask)!r}, 'w').write('finished mask')\n"
                 "print(json.dumps({'stage': 'render', 'done': 0, 'total': 9}), flush=True)\ntime.sleep(60)\n")
    feedback = Recorder()
    feedback.progressChanged.connect(lambda value: feedback.cancel())
    with pytest.raises(QgsProcessingException, match="Canceled by the user. The finished output .*mask.tif"):
        runner.run_satgen("generate", [], feedback, [str(image), str(mask)], keep_after={str(mask): "render"})
    assert mask.read_text() == "finished mask" and not image.exists()


def test_pipes_are_closed(fake_toolkit):
    """Item 21: no ResourceWarning (unclosed pipe files) after a run, as qgis_process showed."""
    fake_toolkit("print(json.dumps({'stage': 'render', 'done': 1, 'total': 1}))\n"
                 "print('log line', file=sys.stderr)\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.run_satgen("render", [], Recorder())
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]

