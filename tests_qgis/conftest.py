"""Headless QGIS for the plugin tests: one QgsApplication, Processing, the SatGen provider.

Run with Debian's Python (QGIS's bindings), e.g.::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 -m pytest -q tests_qgis

The toolkit CLI defaults to this checkout's ``.venv/bin/satgen``; override it with
``SATGEN_TEST_CLI=/path/to/satgen`` (or a Python environment folder).
"""

from __future__ import annotations

import gc
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "qgis_plugin"
QGIS_PLUGINS = Path(os.environ.get("QGIS_PLUGINS_DIR", "/usr/share/qgis/python/plugins"))
TEST_CLI = os.environ.get("SATGEN_TEST_CLI") or str(REPO / ".venv" / "bin" / "satgen")

try:
    from qgis.core import QgsApplication, QgsProcessingFeedback, QgsProject  # noqa: E402
except ImportError as err:  # e.g. run with the toolkit's venv instead of the system Python
    raise pytest.UsageError(
        f"tests_qgis need QGIS's Python bindings ({err}). Install them with 'apt-get install -y "
        "--no-install-recommends python3-qgis qgis-providers python3-gdal python3-pytest' and run "
        "'QT_QPA_PLATFORM=offscreen /usr/bin/python3 -m pytest -q tests_qgis'.") from None

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep QGIS settings (the provider setting included) out of the user's profile.
_SCRATCH = tempfile.mkdtemp(prefix="satgen-qgis-tests-")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_SCRATCH, "config")
# Qt/QGIS scratch files (qt_temp-*, processing_*) go here too and are removed at the end.
os.environ["TMPDIR"] = _SCRATCH
os.environ["XDG_RUNTIME_DIR"] = os.path.join(_SCRATCH, "runtime")
os.makedirs(os.environ["XDG_RUNTIME_DIR"], mode=0o700)
# Modest CPU use in the toolkit subprocess (inherited environment).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
for path in (str(PLUGIN_DIR), str(QGIS_PLUGINS)):
    if path not in sys.path:
        sys.path.insert(0, path)

_STATE: dict = {}
#: Layers created by tests; deleted before exitQgis() (else Python crashes at exit).
LAYERS: list = []


def pytest_configure(config) -> None:
    QgsApplication.setPrefixPath(os.environ.get("QGIS_PREFIX_PATH", "/usr"), True)
    app = QgsApplication([], False, os.path.join(_SCRATCH, "profile"))
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    from satgen.plugin import SatGenPlugin

    plugin = SatGenPlugin(None)
    plugin.initProcessing()
    _STATE.update(app=app, plugin=plugin)
    set_toolkit(TEST_CLI)


def pytest_unconfigure(config) -> None:
    app = _STATE.pop("app", None)
    if app is None:
        return
    LAYERS.clear()
    QgsProject.instance().removeAllMapLayers()
    gc.collect()
    _STATE.pop("plugin").unload()
    from processing.core.Processing import Processing

    Processing.deinitialize()
    app.exitQgis()
    shutil.rmtree(_SCRATCH, ignore_errors=True)


def set_toolkit(value: str) -> None:
    """Store the provider's toolkit setting as a saved profile holds it, without the check the
    Options dialog runs (see test_toolkit_setting.py for that check)."""
    from processing.core.ProcessingConfig import ProcessingConfig
    from satgen.toolkit import SETTING_NAME

    ProcessingConfig.settings[SETTING_NAME].value = value


def write_utm_raster(path: Path, bands: int) -> Path:
    """An 8 x 8 px zero GeoTIFF of ``bands`` uint8 bands, 1 m pixels in EPSG:32635."""
    from osgeo import gdal
    from qgis.core import QgsCoordinateReferenceSystem

    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 8, 8, bands, gdal.GDT_Byte)
    dataset.SetGeoTransform((500000, 1, 0, 6700000, 0, -1))
    dataset.SetProjection(QgsCoordinateReferenceSystem("EPSG:32635").toWkt())
    del dataset  # closes and flushes the file
    return path


@pytest.fixture(scope="session")
def toolkit_cli() -> str:
    if not Path(TEST_CLI).exists():
        pytest.skip(f"toolkit CLI {TEST_CLI} not found; set SATGEN_TEST_CLI")
    return TEST_CLI


@pytest.fixture(scope="session")
def tiny_checkpoint(toolkit_cli, tmp_path_factory) -> str:
    """A tiny random generator (features=8): fast on CPU, enough to exercise the plumbing."""
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    python = Path(toolkit_cli).with_name("python")
    code = ("import sys; from satgen_geo.model import UNetGenerator, ModelSpec, save_generator; "
            "save_generator(UNetGenerator(features=8), ModelSpec(features=8, name='tiny'), sys.argv[1])")
    subprocess.run([str(python), "-c", code, str(path)], check=True, timeout=120)
    return str(path)


@pytest.fixture(scope="session")
def sample_osm() -> str:
    path = REPO / "sample_aoi" / "kotka-suburb.osm.pbf"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return str(path)


FAKE_HEADER = f"#!{sys.executable}\nimport json, os, signal, sys, time\n"


@pytest.fixture
def fake_toolkit(tmp_path):
    """Install a fake ``satgen`` script (Python source body) as the configured toolkit."""
    def install(body: str) -> Path:
        path = tmp_path / "fake-env" / "bin" / "satgen"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FAKE_HEADER + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        set_toolkit(str(tmp_path / "fake-env"))
        return path

    yield install
    set_toolkit(TEST_CLI)


class Recorder(QgsProcessingFeedback):
    """Keeps what the algorithm dialog would show: log lines by kind, progress values and texts."""

    def __init__(self):
        super().__init__()
        self.infos, self.warnings, self.errors, self.progress, self.texts = [], [], [], [], []
        self.progressChanged.connect(self.progress.append)

    def setProgressText(self, text):  # noqa: N802
        self.texts.append(text)

    def pushInfo(self, text):  # noqa: N802
        self.infos.append(text)

    def pushWarning(self, text):  # noqa: N802
        self.warnings.append(text)

    def reportError(self, text, fatalError=False):  # noqa: N802
        self.errors.append((text, fatalError))

    @property
    def log(self):
        return self.infos + self.warnings + [text for text, _ in self.errors]


def one_road_layer():
    """A memory layer with one road line near Kotka (EPSG:4326)."""
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    layer = QgsVectorLayer("LineString?crs=EPSG:4326", "road", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromWkt("LineString (26.94 60.52, 26.95 60.53)"))
    layer.dataProvider().addFeatures([feature])
    LAYERS.append(layer)
    return layer
