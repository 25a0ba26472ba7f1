"""Provider registration, toolkit discovery, and the errors users see before any work runs."""

from __future__ import annotations

import os
import stat

import processing
import pytest
from conftest import TEST_CLI, one_road_layer, set_toolkit
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

from satgen import toolkit

ALGORITHMS = {"satgen:generatefromosm", "satgen:generatefromvector", "satgen:generatefrommask", "satgen:rasterizemask"}


def test_provider_registers_four_algorithms():
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("satgen")
    assert provider is not None and provider.name() == "SatGen"
    assert {a.id() for a in provider.algorithms()} == ALGORITHMS
    for algorithm_id in ALGORITHMS:
        algorithm = registry.algorithmById(algorithm_id)
        assert algorithm is not None, algorithm_id
        # no group: the algorithms sit directly under the provider (issue 10, item 14)
        assert algorithm.group() == "" and algorithm.groupId() == ""
        assert algorithm.shortHelpString().strip()
        assert "OUTPUT" in [d.name() for d in algorithm.destinationParameterDefinitions()]
    assert provider.supportedOutputRasterLayerExtensions() == ["tif"]
    assert not provider.icon().isNull()


def test_provider_setting_is_registered():
    from processing.core.ProcessingConfig import ProcessingConfig

    assert toolkit.SETTING_NAME in ProcessingConfig.settings
    assert ProcessingConfig.getSetting(toolkit.SETTING_NAME) == TEST_CLI


def _fake_exe(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_toolkit_forms(tmp_path):
    exe = _fake_exe(tmp_path / "env" / "bin" / "satgen")
    assert toolkit.command_for(str(tmp_path / "env")) == [str(exe)]  # environment folder
    assert toolkit.command_for(str(exe)) == [str(exe)]  # the executable itself
    python = _fake_exe(tmp_path / "pyenv" / "bin" / "python3")
    assert toolkit.command_for(str(tmp_path / "pyenv")) == [str(python), "-m", "satgen_geo"]
    assert toolkit.command_for(str(tmp_path / "nothing")) is None
    # setting wins; then $SATGEN_CLI; then PATH
    assert toolkit.find_command(str(exe), {"PATH": ""}) == [str(exe)]
    assert toolkit.find_command("", {"SATGEN_CLI": str(tmp_path / "env"), "PATH": ""}) == [str(exe)]
    assert toolkit.find_command("", {"PATH": str(exe.parent)}) == [str(exe)]
    with pytest.raises(toolkit.ToolkitNotFound, match="SATGEN_CLI"):
        toolkit.find_command("", {"SATGEN_CLI": str(tmp_path / "nothing"), "PATH": ""})


def test_missing_toolkit_gives_install_command(tmp_path):
    feedback = QgsProcessingFeedback()
    set_toolkit(str(tmp_path / "no-such-env"))
    try:
        with pytest.raises(QgsProcessingException) as caught:
            processing.run("satgen:generatefromvector", {
                "ROADS": one_road_layer(), "OUTPUT": str(tmp_path / "out.tif"),
            }, feedback=feedback)
    finally:
        set_toolkit(TEST_CLI)
    message = str(caught.value)
    assert str(tmp_path / "no-such-env") in message
    assert "python3 -m venv ~/.local/share/satgen-geo/venv" in message
    assert "pip install satgen-geo" in message
    assert "SatGen toolkit environment" in message
    assert not os.path.exists(tmp_path / "out.tif")


@pytest.mark.parametrize("parameters, expected", [
    ({}, "needs an area"),
    ({}, "or choose a local OSM file"),  # no file and no area: the message says how to use a file
    ({"OSM_FILE": "/no/such/file.osm.pbf"}, "does not exist"),
    ({"EXTENT": "26.94,26.95,60.52,60.53 [EPSG:4326]", "OSM_FILE": "/x.osm.pbf"}, "/x.osm.pbf does not exist"),
])
def test_osm_parameter_checks(tmp_path, parameters, expected):
    with pytest.raises(QgsProcessingException, match=expected):
        processing.run("satgen:generatefromosm", {**parameters, "OUTPUT": str(tmp_path / "o.tif")})


@pytest.mark.parametrize("algorithm", ["satgen:generatefromosm", "satgen:rasterizemask"])
def test_data_source_is_one_choice(algorithm):
    """Item 15: no separate 'source' control to contradict the inputs; a file set means the file."""
    registry = QgsApplication.processingRegistry()
    definitions = {d.name(): d for d in registry.algorithmById(algorithm).parameterDefinitions()}
    assert "SOURCE" not in definitions
    assert "empty = download from the Overpass API" in definitions["OSM_FILE"].description()


def test_rasterize_refuses_a_file_and_layers_together(tmp_path):
    osm = tmp_path / "area.osm"
    osm.write_text("<osm version='0.6'/>")
    with pytest.raises(QgsProcessingException, match="either a local OSM file or road/building layers"):
        processing.run("satgen:rasterizemask", {"OSM_FILE": str(osm), "ROADS": one_road_layer(),
                                                "OUTPUT": str(tmp_path / "m.tif")})


def test_vector_needs_a_layer(tmp_path):
    with pytest.raises(QgsProcessingException, match="road line layer and/or a building polygon layer"):
        processing.run("satgen:generatefromvector", {"OUTPUT": str(tmp_path / "o.tif")})
