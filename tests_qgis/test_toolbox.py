"""What a desktop user sees before running: toolbox tree, names, search, metadata, layer pickers."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import PLUGIN_DIR, QGIS_PLUGINS, write_utm_raster
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QModelIndex

ALGORITHMS = ("satgen:generatefromosm", "satgen:generatefromvector", "satgen:generatefrommask", "satgen:rasterizemask")
REPOSITORY = "https://github.com/satgen-geo/satgen-geo"


def _toolbox(filter_text: str = ""):
    """The Processing Toolbox's own model, filtered like its search box: (depth, text) rows."""
    from qgis.gui import QgsProcessingToolboxProxyModel

    model = QgsProcessingToolboxProxyModel(None, QgsApplication.processingRegistry())
    model.setFilterString(filter_text)
    rows = []

    def walk(parent, depth):
        for row in range(model.rowCount(parent)):
            index = model.index(row, 0, parent)
            rows.append((depth, model.data(index)))
            walk(index, depth + 1)

    walk(QModelIndex(), 0)
    return rows


def _satgen_subtree(rows):
    start = rows.index((0, "SatGen"))
    end = next((i for i in range(start + 1, len(rows)) if rows[i][0] == 0), len(rows))
    return rows[start + 1:end]


def _names():
    registry = QgsApplication.processingRegistry()
    return sorted(registry.algorithmById(a).displayName() for a in ALGORITHMS)


def test_algorithms_sit_directly_under_the_provider():
    assert sorted(_satgen_subtree(_toolbox())) == [(1, name) for name in _names()]


def test_names_are_short_and_differ_early():
    """The toolbox shows about 30 characters at its default width: the distinguishing word must fit."""
    names = _names()
    assert max(len(name) for name in names) <= 33, names
    assert len({name[:18] for name in names}) == len(names), names


@pytest.mark.parametrize("word", ["synthetic", "aerial", "orthophoto"])
def test_toolbox_search_finds_the_algorithms(word):
    found = _satgen_subtree(_toolbox(word))
    assert sorted(found) == [(1, name) for name in _names()]


def test_metadata_links_and_help_urls():
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read(PLUGIN_DIR / "satgen" / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    assert general["homepage"] == REPOSITORY and general["repository"] == REPOSITORY
    assert general["tracker"] == f"{REPOSITORY}/issues"
    readme = (PLUGIN_DIR / "README.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in readme.splitlines() if line.startswith("#")}
    registry = QgsApplication.processingRegistry()
    for algorithm_id in ALGORITHMS:
        url = registry.algorithmById(algorithm_id).helpUrl()
        assert url.startswith(f"{REPOSITORY}/blob/main/qgis_plugin/README.md#"), url
        assert url.split("#", 1)[1] in anchors, (url, sorted(anchors))


# A fresh GUI QgsApplication (widgets need one): project layers, then the dialog's own widget
# wrappers for the layer parameters, as the algorithm dialog creates them.
PICKERS = textwrap.dedent("""
    import sys
    from qgis.core import QgsApplication, QgsProject, QgsProcessingContext, QgsRasterLayer, QgsVectorLayer
    app = QgsApplication([], True, sys.argv[1])
    app.initQgis()
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from processing.core.Processing import Processing
    Processing.initialize()
    from qgis.gui import QgsGui, QgsProcessingGui
    from satgen.plugin import SatGenPlugin
    plugin = SatGenPlugin(None)
    plugin.initProcessing()
    project = QgsProject.instance()
    layers = {
        "lakes": QgsVectorLayer("Polygon?crs=EPSG:3067", "lakes", "memory"),
        "paths": QgsVectorLayer("LineString?crs=EPSG:3067", "paths", "memory"),
        "streets": QgsVectorLayer("LineString?crs=EPSG:3067&field=highway:string", "streets", "memory"),
        "houses": QgsVectorLayer("Polygon?crs=EPSG:3067&field=building:string", "houses", "memory"),
        "rgb": QgsRasterLayer(sys.argv[4], "rgb"),
        "mask": QgsRasterLayer(sys.argv[5], "mask"),
    }
    for layer in layers.values():
        assert layer.isValid()
        project.addMapLayer(layer)
    context = QgsProcessingContext()
    context.setProject(project)
    ids = {layer.id(): key for key, layer in layers.items()}
    for algorithm_id, name in (("satgen:generatefromvector", "ROADS"), ("satgen:generatefromvector", "BUILDINGS"),
                               ("satgen:generatefrommask", "MASK")):
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
        definition = algorithm.parameterDefinition(name)
        wrapper = QgsGui.processingGuiRegistry().createParameterWidgetWrapper(definition, QgsProcessingGui.Standard)
        widget = wrapper.createWrappedWidget(context)
        print("PICKER", name, ids.get(wrapper.parameterValue()), "DEFAULT", definition.defaultValue())
        del widget, wrapper
    project.removeAllMapLayers()
    plugin.unload()
    Processing.deinitialize()
    app.exitQgis()
""")


def test_layer_pickers_start_with_suitable_project_layers(tmp_path):
    """Item 21: the dialog starts with the project's road/building layers and its two-band mask.

    Scripts are unaffected (``defaultValue`` stays empty): only the dialog gets the suggestion.
    """
    rgb, mask = write_utm_raster(tmp_path / "rgb.tif", 3), write_utm_raster(tmp_path / "mask.tif", 2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", PICKERS, str(tmp_path / "profile"), str(PLUGIN_DIR), str(QGIS_PLUGINS),
                           str(rgb), str(mask)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    pickers = [line.split() for line in done.stdout.splitlines() if line.startswith("PICKER")]
    assert pickers == [["PICKER", "ROADS", "streets", "DEFAULT", "None"],
                       ["PICKER", "BUILDINGS", "houses", "DEFAULT", "None"],
                       ["PICKER", "MASK", "mask", "DEFAULT", "None"]]
