"""Find the ``satgen`` command line of the SatGen toolkit environment.

The toolkit (PyTorch, rasterio, …) is never imported into QGIS's Python: it lives in its
own Python environment and the plugin runs its ``satgen`` command as a subprocess. This
module only decides *which* command to run; it imports nothing from QGIS so that it can
be used and tested anywhere.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

#: Processing setting (Options → Processing → Providers → SatGen) holding the toolkit path.
SETTING_NAME = "SATGEN_TOOLKIT"
SETTING_DESCRIPTION = "SatGen toolkit environment (Python environment folder or path to the satgen executable)"
#: Where the path shows up in the QGIS user interface.
SETTING_LOCATION = "Settings → Options → Processing → Providers → SatGen → SatGen toolkit environment"
#: Environment variable that may point to the toolkit (same forms as the setting).
ENV_VAR = "SATGEN_CLI"

_WINDOWS = sys.platform.startswith("win")
_EXECUTABLES = ("Scripts/satgen.exe", "bin/satgen.exe", "satgen.exe") if _WINDOWS else ("bin/satgen", "satgen")
_PYTHONS = ("Scripts/python.exe", "python.exe") if _WINDOWS else ("bin/python3", "bin/python", "python3", "python")


class ToolkitNotFound(Exception):
    """The toolkit's ``satgen`` command could not be found; the message says how to fix it."""


def default_environment() -> Path:
    """The folder the install instructions create the toolkit environment in."""
    if _WINDOWS:
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "satgen-geo" / "venv"
    return Path.home() / ".local" / "share" / "satgen-geo" / "venv"


def install_command() -> str:
    """The shell command that installs the toolkit into :func:`default_environment`."""
    if _WINDOWS:
        env = r"%LOCALAPPDATA%\satgen-geo\venv"
        return f"py -3 -m venv {env} && {env}\\Scripts\\pip install satgen-geo"
    env = "~/.local/share/satgen-geo/venv"
    return f"python3 -m venv {env} && {env}/bin/pip install satgen-geo"


def _is_executable(path: Path) -> bool:
    return path.is_file() and (_WINDOWS or os.access(path, os.X_OK))


def command_for(location: str) -> Optional[List[str]]:
    """The command prefix for a configured location, or ``None`` if it holds no toolkit.

    ``location`` may be a Python environment folder (``…/venv``), its ``bin``/``Scripts``
    folder, the ``satgen`` executable itself, or a Python interpreter (then
    ``python -m satgen_geo`` is run).
    """
    path = Path(os.path.expandvars(location.strip().strip('"'))).expanduser()
    if path.is_dir():
        for name in _EXECUTABLES:
            if _is_executable(path / name):
                return [str(path / name)]
        for name in _PYTHONS:
            if _is_executable(path / name):
                return [str(path / name), "-m", "satgen_geo"]
        return None
    if _is_executable(path):
        if path.name.lower().startswith("python"):
            return [str(path), "-m", "satgen_geo"]
        return [str(path)]
    return None


def find_command(setting: Optional[str], environ: Optional[dict] = None) -> List[str]:
    """The ``satgen`` command prefix to run.

    Order: the Processing setting (if set, it must be valid: no silent fallback), the
    ``SATGEN_CLI`` environment variable, ``satgen`` on ``PATH``, then the default
    environment folder of the install instructions.

    Raises
    ------
    ToolkitNotFound
        With a message naming what was searched, the install command and the setting.
    """
    environ = os.environ if environ is None else environ
    if setting and str(setting).strip():
        found = command_for(str(setting))
        if found:
            return found
        raise ToolkitNotFound(_message(f"The SatGen toolkit environment is set to '{setting}', which is not a "
                                       "Python environment with the satgen command (or the satgen executable)."))
    value = environ.get(ENV_VAR, "").strip()
    if value:
        found = command_for(value)
        if found:
            return found
        raise ToolkitNotFound(_message(f"The {ENV_VAR} environment variable is '{value}', which is not a Python "
                                       "environment with the satgen command (or the satgen executable)."))
    on_path = shutil.which("satgen", path=environ.get("PATH"))
    if on_path:
        return [on_path]
    found = command_for(str(default_environment()))
    if found:
        return found
    raise ToolkitNotFound(_message(f"The SatGen toolkit was not found (searched: the setting, ${ENV_VAR}, "
                                   f"'satgen' on PATH and {default_environment()})."))


def _message(reason: str) -> str:
    return (f"{reason} Install the toolkit with: {install_command()} — then set '{SETTING_LOCATION}' "
            f"to the environment folder ({default_environment()}) or to the satgen executable.")


def describe(command: Sequence[str]) -> str:
    """A readable form of a command prefix for log output."""
    return " ".join(command)
