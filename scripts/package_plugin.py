#!/usr/bin/env python3
"""Build the installable QGIS plugin zip: ``dist/satgen-qgis-plugin-<version>.zip``.

The zip holds the ``satgen/`` plugin folder (QGIS → Plugins → Manage and Install Plugins →
Install from ZIP). Runs with any Python 3 (standard library only)::

    python3 scripts/package_plugin.py [--output-dir dist]
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "qgis_plugin" / "satgen"
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}
REQUIRED = ("__init__.py", "metadata.txt", "icon.png", "plugin.py", "provider.py", "runner.py", "toolkit.py")


def plugin_version(plugin_dir: Path = PLUGIN) -> str:
    """The ``version`` of the plugin's metadata.txt."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(plugin_dir / "metadata.txt", encoding="utf-8")
    return parser["general"]["version"].strip()


def plugin_files(plugin_dir: Path = PLUGIN) -> list[Path]:
    """The files that go into the zip, sorted, relative to the plugin folder."""
    files = []
    for path in sorted(plugin_dir.rglob("*")):
        relative = path.relative_to(plugin_dir)
        if path.is_dir() or any(part in EXCLUDED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.suffix in EXCLUDED_SUFFIXES:
            continue
        files.append(relative)
    return files


def build(output_dir: Path, plugin_dir: Path = PLUGIN) -> Path:
    """Write the zip; return its path."""
    files = plugin_files(plugin_dir)
    missing = [name for name in REQUIRED if Path(name) not in files]
    if missing:
        raise SystemExit(f"plugin folder {plugin_dir} lacks {', '.join(missing)}")
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"satgen-qgis-plugin-{plugin_version(plugin_dir)}.zip"
    tmp = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in files:
            info = zipfile.ZipInfo(f"{plugin_dir.name}/{relative.as_posix()}", date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, (plugin_dir / relative).read_bytes())
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist", help="Folder for the zip [dist/].")
    args = parser.parse_args(argv)
    target = build(args.output_dir)
    print(f"wrote {target} ({len(plugin_files())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
