"""The "SatGen" Processing provider: lists the algorithms and owns the toolkit setting."""

from __future__ import annotations

import threading
from typing import Optional

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider

from . import resources
from .algorithms import ALGORITHMS
from .runner import configured_location
from .toolkit import SETTING_DESCRIPTION, SETTING_NAME, Toolkit, ToolkitNotFound, cached, detect

try:
    from processing.core.ProcessingConfig import ProcessingConfig, Setting
except ImportError:  # pragma: no cover - QGIS without the Processing plugin
    ProcessingConfig = Setting = None

LOG_TAG = "SatGen"


def check_toolkit(value: str) -> Optional[Toolkit]:
    """Validate a toolkit setting as it is set; log, show and return what was found.

    An empty value means autodetection: what it finds (or not) is logged, nothing is refused.

    Raises
    ------
    ValueError
        When a value is given but holds no working toolkit (the Options dialog shows the message).
    """
    value = str(value or "").strip()
    try:
        found = detect(value)
    except ToolkitNotFound as err:
        if value:
            raise ValueError(str(err)) from None
        QgsMessageLog.logMessage(str(err), LOG_TAG, Qgis.Warning)
        found = None
    else:
        QgsMessageLog.logMessage(f"SatGen toolkit: {found.summary()}", LOG_TAG, Qgis.Info)
    if ProcessingConfig is not None and SETTING_NAME in ProcessingConfig.settings:
        detail = f" — found: {found.summary()}" if found is not None else ""
        ProcessingConfig.settings[SETTING_NAME].description = SETTING_DESCRIPTION + detail
    return found


def check_in_background(location: str) -> threading.Thread:
    """:func:`check_toolkit` for the stored setting, off the GUI thread (at startup)."""

    def work() -> None:
        try:
            check_toolkit(location)
        except ValueError as err:  # a stored value that no longer holds a toolkit: say so in the log
            QgsMessageLog.logMessage(str(err), LOG_TAG, Qgis.Warning)

    thread = threading.Thread(target=work, name="satgen-toolkit-check", daemon=True)
    thread.start()
    return thread


class SatGenProvider(QgsProcessingProvider):
    """Provider id ``satgen``; algorithms ``satgen:generatefromosm`` and friends."""

    def id(self) -> str:
        return "satgen"

    def name(self) -> str:
        return "SatGen"

    def longName(self) -> str:  # noqa: N802 - QGIS API name
        found = cached(configured_location())
        toolkit = f"; toolkit {found.summary()}" if found is not None else ""
        return f"SatGen synthetic aerial imagery ({resources.metadata_version()}{toolkit})"

    def icon(self):
        return resources.icon()

    def versionInfo(self) -> str:  # noqa: N802 - QGIS API name
        return resources.metadata_version()

    def load(self) -> bool:
        if ProcessingConfig is not None:
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            # FILE: the "…" button picks the satgen executable or a Python; a folder can be typed.
            ProcessingConfig.addSetting(Setting(self.name(), SETTING_NAME, SETTING_DESCRIPTION, "",
                                                valuetype=Setting.FILE, validator=check_toolkit,
                                                placeholder="empty = autodetect"))
            ProcessingConfig.readSettings()
        check_in_background(configured_location())
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        if ProcessingConfig is not None and SETTING_NAME in ProcessingConfig.settings:
            ProcessingConfig.removeSetting(SETTING_NAME)

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API name
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 - QGIS API name
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:  # noqa: N802 - QGIS API name
        return "tif"
