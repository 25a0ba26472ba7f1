"""The plugin zip: contents, and that QGIS's own plugin loader installs and starts it."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import textwrap
import zipfile

from conftest import REPO

LOADER = textwrap.dedent("""
    import sys
    from qgis.core import QgsApplication
    app = QgsApplication([], False, sys.argv[2])
    app.initQgis()
    sys.path.insert(0, sys.argv[3])
    from processing.core.Processing import Processing
    Processing.initialize()
    import qgis.utils
    qgis.utils.plugin_paths = [sys.argv[1]]
    sys.path.insert(0, sys.argv[1])  # QGIS puts its plugin folders on sys.path at startup
    qgis.utils.updateAvailablePlugins()
    assert qgis.utils.pluginMetadata("satgen", "hasProcessingProvider") == "yes"
    assert qgis.utils.pluginMetadata("satgen", "qgisMinimumVersion") == "3.22"
    assert qgis.utils.loadPlugin("satgen"), "loadPlugin failed"
    assert qgis.utils.startPlugin("satgen"), "startPlugin failed"
    registry = QgsApplication.processingRegistry()
    ids = sorted(a.id() for a in registry.providerById("satgen").algorithms())
    print("ALGORITHMS", " ".join(ids))
    assert qgis.utils.unloadPlugin("satgen"), "unloadPlugin failed"
    assert registry.providerById("satgen") is None, "provider still registered after unload"
    Processing.deinitialize()
    app.exitQgis()
    print("OK")
""")


def test_zip_contents_and_qgis_loads_it(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "package_plugin.py"), "--output-dir",
                             str(tmp_path / "dist")], capture_output=True, text=True, check=True)
    zips = list((tmp_path / "dist").glob("satgen-qgis-plugin-*.zip"))
    assert len(zips) == 1, result.stdout
    with zipfile.ZipFile(zips[0]) as archive:
        names = archive.namelist()
        assert all(n.startswith("satgen/") for n in names)
        assert {"satgen/__init__.py", "satgen/metadata.txt", "satgen/icon.png", "satgen/LICENSE",
                "satgen/algorithms/base.py"} <= set(names)
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        metadata = configparser.ConfigParser(interpolation=None)
        metadata.read_string(archive.read("satgen/metadata.txt").decode("utf-8"))
        assert zips[0].name == f"satgen-qgis-plugin-{metadata['general']['version']}.zip"
        plugins = tmp_path / "profile" / "python" / "plugins"
        archive.extractall(plugins)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    loaded = subprocess.run(
        [sys.executable, "-c", LOADER, str(plugins), str(tmp_path / "profile"), "/usr/share/qgis/python/plugins"],
        capture_output=True, text=True, env=env, timeout=120, cwd=str(tmp_path))
    assert loaded.returncode == 0 and "OK" in loaded.stdout, loaded.stdout + loaded.stderr
    assert ("ALGORITHMS satgen:generatefrommask satgen:generatefromosm satgen:generatefromvector "
            "satgen:rasterizemask") in loaded.stdout
