"""Find the ``satgen`` command line of the SatGen toolkit environment.

The toolkit (PyTorch, rasterio, …) is never imported into QGIS's Python: it lives in its
own Python environment and the plugin runs its ``satgen`` command as a subprocess. This
module only decides *which* command to run; it imports nothing from QGIS so that it can
be used and tested anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

#: Processing setting (Options → Processing → Providers → SatGen) holding the toolkit path.
SETTING_NAME = "SATGEN_TOOLKIT"
SETTING_DESCRIPTION = ("SatGen toolkit environment (the satgen executable, a Python with satgen-geo, or its "
                       "environment folder)")
#: Where the path shows up in the QGIS user interface.
SETTING_LOCATION = "Settings → Options → Processing → Providers → SatGen → SatGen toolkit environment"
#: Environment variable that may point to the toolkit (same forms as the setting).
ENV_VAR = "SATGEN_CLI"

_WINDOWS = sys.platform.startswith("win")
_EXECUTABLES = ("Scripts/satgen.exe", "bin/satgen.exe", "satgen.exe") if _WINDOWS else ("bin/satgen", "satgen")
_PYTHONS = ("Scripts/python.exe", "python.exe") if _WINDOWS else ("bin/python3", "bin/python", "python3", "python")
#: Variables of QGIS's own Python/PROJ/GDAL that must not leak into the toolkit's Python.
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE",
                 "PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "GDAL_DRIVER_PATH", "GDAL_PLUGINS", "QGIS_PREFIX_PATH")
#: Seconds one detection run (``satgen --version``, the torch probe) may take.
DETECT_TIMEOUT_S = 120.0
#: Run by the toolkit's Python: versions and the device ``--device auto`` picks.
_PROBE = ("import json, satgen_geo, torch\n"
          "from satgen_geo.model.loaded import resolve_device\n"
          "print(json.dumps({'satgen': satgen_geo.__version__, 'torch': torch.__version__, "
          "'device': str(resolve_device('auto'))}))")


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


def child_env() -> Dict[str, str]:
    """The environment the toolkit runs in: this one without QGIS's Python/PROJ/GDAL variables."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@dataclass(frozen=True)
class Toolkit:
    """What :func:`detect` found: the command, the versions and the device ``auto`` picks."""

    command: Tuple[str, ...]
    version: str
    torch: str = "unknown"
    device: str = "unknown"

    def summary(self) -> str:
        """One line for logs and the settings: path, satgen version, torch version and device."""
        return (f"{describe(self.command)} (satgen {self.version}, torch {self.torch}, "
                f"compute device {self.device})")


_DETECTED: Dict[Tuple[Tuple[str, ...], Optional[int]], Toolkit] = {}


def detect(location: Optional[str], environ: Optional[dict] = None) -> Toolkit:
    """Find the toolkit like :func:`find_command` and check that it runs.

    Runs ``satgen --version`` and, with the toolkit's Python, a probe for the torch version
    and the device ``--device auto`` picks. Results are cached per command (until the
    executable changes).

    Raises
    ------
    ToolkitNotFound
        When nothing is found or the command does not run; the message says how to fix it.
    """
    command = tuple(find_command(location, environ))
    key = (command, _mtime(command[0]))
    if key not in _DETECTED:
        answer = _run_probe([*command, "--version"]).strip()
        if ", version " not in answer:
            raise ToolkitNotFound(_message(f"{describe(command)} is not the satgen command (its --version "
                                           f"printed {answer[:80]!r})."))
        found = Toolkit(command, answer.rsplit(" ", 1)[-1])
        python = python_of(command)
        if python:
            try:
                probe = json.loads(_run_probe([python, "-c", _PROBE]).strip().splitlines()[-1])
                found = Toolkit(command, probe["satgen"], probe["torch"], probe["device"])
            except (ToolkitNotFound, ValueError, KeyError, IndexError):
                pass  # the command runs; only the torch details are unknown
        _DETECTED[key] = found
    return _DETECTED[key]


def cached(location: Optional[str], environ: Optional[dict] = None) -> Optional[Toolkit]:
    """The last :func:`detect` result for this setting, without running anything (or ``None``)."""
    try:
        command = tuple(find_command(location, environ))
    except ToolkitNotFound:
        return None
    return _DETECTED.get((command, _mtime(command[0])))


def python_of(command: Sequence[str]) -> Optional[str]:
    """The Python interpreter of a command prefix: itself, the script's ``#!`` line, or a sibling."""
    if len(command) > 1:
        return command[0]
    executable = Path(command[0])
    try:
        with open(executable.resolve(), "rb") as handle:
            first = handle.readline(4096).decode("utf-8", "replace")
    except OSError:
        first = ""
    if first.startswith("#!"):
        interpreter = first[2:].strip().split(" ")[0]
        if Path(interpreter).name.lower().startswith("python") and _is_executable(Path(interpreter)):
            return interpreter
    for name in ("python.exe",) if _WINDOWS else ("python3", "python"):
        if _is_executable(executable.parent / name):
            return str(executable.parent / name)
    return None


def _run_probe(argv: List[str]) -> str:
    """stdout of a short toolkit command; ToolkitNotFound when it cannot run or fails."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=child_env(),
                              encoding="utf-8", errors="replace", timeout=DETECT_TIMEOUT_S,
                              creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if _WINDOWS else 0)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ToolkitNotFound(_message(f"Cannot run the SatGen toolkit ({describe(argv)}): {err}.")) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise ToolkitNotFound(_message(f"The SatGen toolkit command {describe(argv[:1])} does not run: {detail}."))
    return done.stdout


def _mtime(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
