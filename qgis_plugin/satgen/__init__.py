"""SatGen QGIS plugin: a Processing provider that runs the satgen-geo toolkit.

The toolkit (PyTorch, rasterio) runs in its own Python environment as the ``satgen``
command; nothing of it is imported into QGIS.
"""


def classFactory(iface):  # noqa: N802 - QGIS API name
    from .plugin import SatGenPlugin

    return SatGenPlugin(iface)
