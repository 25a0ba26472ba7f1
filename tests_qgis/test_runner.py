"""The subprocess runner against fake toolkits: progress, errors, stubborn processes, leftovers."""

from __future__ import annotations

import time

import pytest
from conftest import Recorder, write_utm_raster
from qgis.core import QgsProcessingException

from satgen import runner

def test_progress_stages_and_log_lines(fake_toolkit, tmp_path):
    fake_toolkit(
        "assert sys.argv[1] == 'generate' and sys.argv[-2:] == ['--progress', 'json'], sys.argv\n"
        "print('WARNING: something odd', file=sys.stderr)\n"
        "for stage, total in (('features', 2), ('rasterize', 2), ('render', 4)):\n"
        "    for done in range(total + 1):\n"
        "        print(json.dumps({'stage': stage, 'done': done, 'total': total}), flush=True)\n"
        "print('wrote out.tif', file=sys.stderr)\n")
    feedback = Recorder()
    runner.run_satgen("generate", ["-o", str(tmp_path / "out.tif")], feedback)
    assert feedback.progress == [2.5, 5.0, 10.0, 15.0, 36.25, 57.5, 78.75, 100.0]
    assert feedback.texts == [runner.STAGE_TEXT[s] for s in ("features", "rasterize", "render")]
    assert feedback.warnings == ["WARNING: something odd"]
    assert "wrote out.tif" in feedback.infos


def test_error_line_becomes_the_exception(fake_toolkit, tmp_path):
    fake_toolkit("print('INFO: working', file=sys.stderr)\n"
                 "print('Error: the AOI is too large (80 km²); use a local OSM file', file=sys.stderr)\nsys.exit(1)\n")
    with pytest.raises(QgsProcessingException, match=r"^Error: the AOI is too large \(80 km²\)"):
        runner.run_satgen("mask", ["-o", str(tmp_path / "m.tif")], Recorder(), [str(tmp_path / "m.tif")])


def test_crash_without_error_line_shows_the_tail(fake_toolkit):
    fake_toolkit("print('Traceback (most recent call last):', file=sys.stderr)\n"
                 "print('ModuleNotFoundError: No module named torch', file=sys.stderr)\nsys.exit(1)\n")
    with pytest.raises(QgsProcessingException, match="exit status 1: .*No module named torch"):
        runner.run_satgen("render", ["x.tif"], Recorder())


def test_stubborn_process_is_killed_and_leftovers_removed(fake_toolkit, tmp_path, monkeypatch):
    """A toolkit that ignores SIGINT and SIGTERM is killed; its partial files are removed."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("not ours")
    fake_toolkit(
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(out_dir / '.image.tif.1234abcd.partial')!r}, 'w').write('half')\n"
        f"os.mkdir({str(out_dir / 'satgen-scratch')!r})\n"
        f"open({str(out_dir / 'mask.tif')!r}, 'w').write('complete mask')\n"
        "print(json.dumps({'stage': 'rasterize', 'done': 1, 'total': 1}), flush=True)\n"
        "time.sleep(60)\n")
    monkeypatch.setattr(runner, "STOP_GRACE_S", 0.3)
    feedback = Recorder()
    feedback.progressChanged.connect(lambda value: feedback.cancel())
    started = time.monotonic()
    with pytest.raises(QgsProcessingException, match="Canceled"):
        runner.run_satgen("generate", [], feedback, [str(out_dir / "image.tif"), str(out_dir / "mask.tif")])
    assert time.monotonic() - started < 10
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.txt"]


def test_existing_output_survives_a_failed_run(fake_toolkit, tmp_path):
    output = tmp_path / "image.tif"
    output.write_text("previous result")
    fake_toolkit("print('Error: cannot read the mask', file=sys.stderr)\nsys.exit(1)\n")
    with pytest.raises(QgsProcessingException):
        runner.run_satgen("render", ["m.tif", "-o", str(output)], Recorder(), [str(output)])
    assert output.read_text() == "previous result"


def test_cli_options_in_errors_are_named_as_parameters(fake_toolkit, tmp_path):
    """The error's concept (JSON ``param``) is named by the parameter's label; the CLI flag is not shown."""
    import processing

    mask = write_utm_raster(tmp_path / "mask.tif", 2)
    fake_toolkit("print(json.dumps({'error': 'the default model is not installed; choose a generator '\n"
                 "                   'checkpoint', 'param': 'checkpoint'}), flush=True)\n"
                 "print('Error: the default model is not installed; choose a generator checkpoint (--checkpoint)',\n"
                 "      file=sys.stderr)\nsys.exit(1)\n")
    expected = r"^Error: the default model is not installed; .* Check the parameter “Generator model"
    with pytest.raises(QgsProcessingException, match=expected) as caught:
        processing.run("satgen:generatefrommask", {"MASK": str(mask), "OUTPUT": str(tmp_path / "o.tif")})
    assert "--" not in str(caught.value)


def test_osm_algorithm_arguments(fake_toolkit, tmp_path):
    """Overpass mode: the extent goes as --bbox in EPSG:4326; the other parameters as options."""
    import json

    import processing
    from qgis.core import QgsCoordinateReferenceSystem

    record = tmp_path / "argv.json"
    fake_toolkit(f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    output = tmp_path / "o.tif"
    from qgis.core import QgsCoordinateTransform, QgsProject, QgsRectangle

    # 26.94..26.96 E, 60.52..60.54 N in Web Mercator
    mercator = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem(
        "EPSG:3857"), QgsProject.instance().transformContext()).transformBoundingBox(
            QgsRectangle(26.94, 60.52, 26.96, 60.54))
    extent = f"{mercator.xMinimum()},{mercator.xMaximum()},{mercator.yMinimum()},{mercator.yMaximum()} [EPSG:3857]"
    processing.run("satgen:generatefromosm", {
        "EXTENT": extent, "OVERPASS_URL": "https://overpass.example.org/api", "GSD": 0.5,
        "CRS": "EPSG:3067", "SEED": 5, "OVERLAP": 64, "DEVICE": 2, "OUTPUT": str(output)})
    argv = json.loads(record.read_text())
    assert argv[0] == "generate" and argv[-2:] == ["--progress", "json"]
    options = dict(zip(argv[1:-2:2], argv[2:-2:2]))
    west, south, east, north = map(float, options["--bbox"].split(","))
    assert (west, south, east, north) == pytest.approx((26.94, 60.52, 26.96, 60.54), abs=1e-5)
    assert options["--overpass-url"] == "https://overpass.example.org/api"
    assert options["--gsd"] == "0.5" and options["--crs"] == "EPSG:3067" and options["--seed"] == "5"
    assert options["--overlap"] == "64" and options["--device"] == "cuda" and options["-o"] == str(output)
    assert "--osm" not in options and "--mask-out" not in options and "--checkpoint" not in options
