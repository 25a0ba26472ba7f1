"""Toolkit errors in QGIS's words: the concept an error names → the parameter's label.

The toolkit's errors name the setting they are about as a concept (a key of
``satgen_geo.errors.PARAMS``), never as a command-line flag. Here a concept becomes the
label of the parameter that sets it; concepts no QGIS parameter sets get a plain hint.
"""

from __future__ import annotations

import re
from typing import Optional

from qgis.core import QgsProcessingAlgorithm

from ..resources import tr
from . import parameters as p

#: Concept → the parameter that sets it.
CONCEPT_PARAMETERS = {
    "bbox": p.EXTENT, "aoi_file": p.AOI, "osm_file": p.OSM_FILE, "roads_file": p.ROADS,
    "buildings_file": p.BUILDINGS, "gsd_m": p.GSD, "crs": p.CRS, "overpass_url": p.OVERPASS_URL,
    "mask": p.MASK, "output": p.OUTPUT, "mask_output": p.MASK_OUTPUT, "checkpoint": p.CHECKPOINT,
    "device": p.DEVICE, "seed": p.SEED, "overlap_px": p.OVERLAP, "backend": p.BACKEND, "precision": p.PRECISION,
}
#: Concepts no parameter sets (limits and settings of the toolkit), with what the user can do.
CONCEPT_HINTS = {
    "max_area_km2": ("QGIS has no setting for the download limit; for a larger area, choose a local OSM file "
                     "(e.g. an extract from download.geofabrik.de)."),
    "max_pixels": "QGIS has no setting for the size limit; choose a larger pixel size or a smaller area.",
    "max_windows": ("QGIS has no setting for the window limit; choose a smaller window overlap, a larger pixel "
                    "size or a smaller area."),
    "generator": "Choose another generator model, or leave it empty for the shipped one.",
    "tile_px": "Choose another generator model, or leave it empty for the shipped one.",
}


def label(alg: QgsProcessingAlgorithm, name: str) -> str:
    """A parameter's label in the dialog without its explanation in brackets ("Output CRS")."""
    return re.sub(r"\s*\(.*\)$", "", alg.parameterDefinition(name).description())


def describe_error(alg: QgsProcessingAlgorithm, message: str, concept: Optional[str]) -> str:
    """``Error: <message>`` plus the label of the parameter to change, or a hint."""
    text = tr("Error: {}").format(message.rstrip())
    name = CONCEPT_PARAMETERS.get(concept or "", "")
    if alg.parameterDefinition(name) is not None:
        return tr("{} Check the parameter “{}”.").format(_sentence(text), label(alg, name))
    hint = CONCEPT_HINTS.get(concept or "")
    return f"{_sentence(text)} {tr(hint)}" if hint else text


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."
