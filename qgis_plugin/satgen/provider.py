"""The "SatGen" Processing provider: lists the algorithms and owns the toolkit setting."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider

from . import resources
from .algorithms import ALGORITHMS
from .toolkit import SETTING_DESCRIPTION, SETTING_NAME

try:
    from processing.core.ProcessingConfig import ProcessingConfig, Setting
except ImportError:  # pragma: no cover - QGIS without the Processing plugin
    ProcessingConfig = Setting = None


class SatGenProvider(QgsProcessingProvider):
    """Provider id ``satgen``; algorithms ``satgen:generatefromosm`` and friends."""

    def id(self) -> str:
        return "satgen"

    def name(self) -> str:
        return "SatGen"

    def longName(self) -> str:
        return f"SatGen synthetic aerial imagery ({resources.metadata_version()})"

    def icon(self):
        return resources.icon()

    def versionInfo(self) -> str:
        return resources.metadata_version()

    def load(self) -> bool:
        if ProcessingConfig is not None:
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            # Any text is accepted: the runner explains a wrong path when an algorithm runs.
            ProcessingConfig.addSetting(Setting(self.name(), SETTING_NAME, SETTING_DESCRIPTION, "",
                                                valuetype=Setting.FOLDER, validator=lambda value: True))
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        if ProcessingConfig is not None and SETTING_NAME in ProcessingConfig.settings:
            ProcessingConfig.removeSetting(SETTING_NAME)

    def loadAlgorithms(self) -> None:
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:
        return "tif"
