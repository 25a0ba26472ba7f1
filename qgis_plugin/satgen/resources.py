"""Plugin resources: the icon and metadata next to this module, and translated texts."""

from __future__ import annotations

import os

from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))


def icon() -> QIcon:
    return QIcon(os.path.join(PLUGIN_DIR, "icon.png"))


def metadata_version() -> str:
    """The ``version`` field of metadata.txt."""
    try:
        with open(os.path.join(PLUGIN_DIR, "metadata.txt"), encoding="utf-8") as handle:
            for line in handle:
                if line.strip().startswith("version="):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "0"


def tr(text: str) -> str:
    """Translate a user-visible text (context ``SatGen``)."""
    return QCoreApplication.translate("SatGen", text)
