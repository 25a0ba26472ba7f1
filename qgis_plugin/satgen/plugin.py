"""QGIS plugin entry: registers the SatGen Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication

from .provider import SatGenProvider


class SatGenPlugin:
    """Adds the SatGen provider to the Processing toolbox; removes it on unload."""

    def __init__(self, iface=None) -> None:
        self.iface = iface
        self.provider = None

    def initProcessing(self) -> None:
        if self.provider is None:
            self.provider = SatGenProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
