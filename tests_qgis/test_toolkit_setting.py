"""Item 18: the toolkit setting picks files, is checked when set, and shows what it found."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import TEST_CLI, set_toolkit
from qgis.core import QgsApplication

from satgen import toolkit


@pytest.fixture
def setting(toolkit_cli):
    """The Processing setting as the Options dialog uses it; the stored value is restored after."""
    from processing.core.ProcessingConfig import ProcessingConfig

    yield ProcessingConfig.settings[toolkit.SETTING_NAME]
    set_toolkit(TEST_CLI)
    ProcessingConfig.settings[toolkit.SETTING_NAME].description = toolkit.SETTING_DESCRIPTION


@pytest.fixture(scope="module")
def expected(toolkit_cli):
    """Versions and the ``auto`` device, asked of the toolkit's own Python directly."""
    python = Path(toolkit_cli).with_name("python")
    code = ("import json, satgen_geo, torch; print(json.dumps([satgen_geo.__version__, torch.__version__, "
            "'cuda' if torch.cuda.is_available() else 'cpu']))")
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                                     timeout=120).stdout)


def test_the_button_picks_files(setting):
    from processing.core.ProcessingConfig import Setting

    assert setting.valuetype == Setting.FILE


@pytest.mark.parametrize("form", ["executable", "environment", "python"])
def test_every_documented_form_is_accepted_and_described(setting, expected, toolkit_cli, form):
    executable = Path(toolkit_cli)
    value = {"executable": executable, "environment": executable.parent.parent,
             "python": executable.with_name("python")}[form]
    setting.setValue(str(value))  # what the Options dialog's OK button does; raises on a bad value
    found = toolkit.detect(str(value))
    version, torch, device = expected
    assert (found.version, found.torch) == (version, torch) and found.device.startswith(device)
    summary = found.summary()
    assert str(value) in summary and f"satgen {version}" in summary and f"compute device {found.device}" in summary
    # shown before any run: next to the setting, in the provider's description and each dialog's help
    assert summary in setting.description
    registry = QgsApplication.processingRegistry()
    set_toolkit(str(value))
    assert summary in registry.providerById("satgen").longName()
    assert summary in registry.algorithmById("satgen:generatefromosm").shortHelpString()


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("make, reason", [
    (lambda tmp: str(tmp / "no-such-env"), "not a Python environment with the satgen command"),
    (lambda tmp: str(_script(tmp / "bin" / "other", "#!/bin/sh\necho hello\n")), "is not the satgen command"),
    (lambda tmp: str(_script(tmp / "bin" / "satgen", "#!/bin/sh\necho broken >&2; exit 3\n")), "does not run: broken"),
])
def test_a_wrong_value_is_refused_when_set(setting, tmp_path, make, reason):
    with pytest.raises(ValueError, match=reason) as caught:
        setting.setValue(make(tmp_path))
    assert "pip install satgen-geo" in str(caught.value)


def test_empty_means_autodetect(setting):
    setting.setValue("")  # never refused: the search order is documented
    assert setting.value == ""


def test_a_missing_toolkit_shows_in_the_dialog_before_run(setting, tmp_path):
    set_toolkit(str(tmp_path / "deleted-env"))  # a stored value whose environment is gone
    help_text = QgsApplication.processingRegistry().algorithmById("satgen:generatefromvector").shortHelpString()
    assert "SatGen toolkit not found" in help_text and str(tmp_path / "deleted-env") in help_text
    assert "pip install satgen-geo" in help_text
