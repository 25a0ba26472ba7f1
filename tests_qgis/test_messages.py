"""What the dialog's log says: progress text that fits the source, errors in QGIS's words."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import processing
import pytest
from conftest import TEST_CLI, Recorder, one_road_layer, write_utm_raster
from qgis.core import QgsProcessingException

from satgen.algorithms.messages import CONCEPT_HINTS, CONCEPT_PARAMETERS

STAGES = ("for stage in ('features', 'rasterize', 'render'):\n"
          "    print(json.dumps({'stage': stage, 'done': 1, 'total': 1}), flush=True)\n")


@pytest.mark.parametrize("algorithm, parameters, reading", [
    ("satgen:generatefromvector", {"ROADS": "road-layer"}, "Reading your layers…"),
    ("satgen:rasterizemask", {"ROADS": "road-layer"}, "Reading your layers…"),
    ("satgen:generatefromosm", {"OSM_FILE": "sample"}, "Reading the OpenStreetMap file…"),
    ("satgen:generatefromosm", {"EXTENT": "26.94,26.95,60.52,60.53 [EPSG:4326]"},
     "Downloading OpenStreetMap features from the Overpass API…"),
])
def test_progress_text_fits_the_source(fake_toolkit, sample_osm, tmp_path, algorithm, parameters, reading):
    fake_toolkit(STAGES)
    values = {"road-layer": one_road_layer(), "sample": sample_osm}
    parameters = {k: values.get(v, v) for k, v in parameters.items()}
    feedback = Recorder()
    processing.run(algorithm, {**parameters, "OUTPUT": str(tmp_path / "o.tif")}, feedback=feedback)
    assert feedback.texts[0] == reading


def test_error_names_the_parameter_label_not_the_flag(tiny_checkpoint, tmp_path):
    """Real CLI: a device that is not there is named as QGIS's "Compute device", not --device."""
    from satgen.toolkit import detect

    missing = "mps" if detect(TEST_CLI).device.startswith("cuda") else "cuda"  # the one this machine lacks
    mask = write_utm_raster(tmp_path / "mask.tif", 2)
    feedback = Recorder()
    with pytest.raises(QgsProcessingException) as caught:
        processing.run("satgen:generatefrommask", {"MASK": str(mask), "CHECKPOINT": tiny_checkpoint,
                                                   "DEVICE": ["auto", "cpu", "cuda", "mps"].index(missing),
                                                   "OUTPUT": str(tmp_path / "o.tif")}, feedback=feedback)
    message = str(caught.value)
    assert message.startswith("Error: ") and missing in message
    assert "Check the parameter “Compute device”" in message
    assert "--" not in message and "(in QGIS" not in message
    assert not any("--device" in line for line in feedback.log)


def test_concept_without_a_control_is_said_plainly(fake_toolkit, tmp_path):
    fake_toolkit("print(json.dumps({'error': 'the area is 80 km², over the 50 km² download limit', "
                 "'param': 'max_area_km2'}), flush=True)\n"
                 "print('Error: the area is 80 km², over the 50 km² download limit (--max-area-km2)', "
                 "file=sys.stderr)\nsys.exit(1)\n")
    with pytest.raises(QgsProcessingException) as caught:
        processing.run("satgen:generatefromosm", {"EXTENT": "26.9,27.1,60.5,60.6 [EPSG:4326]",
                                                  "OUTPUT": str(tmp_path / "o.tif")})
    message = str(caught.value)
    assert message.startswith("Error: the area is 80 km², over the 50 km² download limit.")
    assert "choose a local OSM file" in message and "--" not in message


def test_output_error_names_the_label(tmp_path):
    with pytest.raises(QgsProcessingException) as caught:
        processing.run("satgen:rasterizemask", {"ROADS": one_road_layer(), "OUTPUT": str(tmp_path / "mask.png")})
    assert "'Mask' must be a GeoTIFF" in str(caught.value) and "OUTPUT" not in str(caught.value)


def test_every_mapped_concept_is_a_core_concept():
    """The concepts the plugin maps exist in satgen_geo.errors.PARAMS (read with the toolkit's Python)."""
    python = Path(TEST_CLI).with_name("python")
    if not python.exists():
        pytest.skip(f"no toolkit Python next to {TEST_CLI}")
    code = "import json; from satgen_geo.errors import PARAMS; print(json.dumps(sorted(PARAMS)))"
    concepts = set(json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                             check=True, timeout=60).stdout))
    assert set(CONCEPT_PARAMETERS) | set(CONCEPT_HINTS) <= concepts
    assert not set(CONCEPT_PARAMETERS) & set(CONCEPT_HINTS)
