"""Which OSM ``highway=*`` classes count as roads, and how wide they are drawn.

Widths are total carriageway widths in metres, typical of European and North American
practice; a way's own ``width=*`` tag wins, then ``lanes=*`` × :data:`LANE_WIDTH_M`, then
this table. Footways, steps, paths, cycleways, bridleways and similar are left out by
default because they are rarely visible as road surface at 1 m/px.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from satgen_geo._validate import check_number
from satgen_geo.errors import ConfigError

#: Width in metres drawn for each included highway class.
ROAD_WIDTHS_M: Mapping[str, float] = MappingProxyType(
    {
        "motorway": 14.0,
        "trunk": 12.0,
        "primary": 10.0,
        "secondary": 9.0,
        "tertiary": 8.0,
        "motorway_link": 7.0,
        "trunk_link": 7.0,
        "primary_link": 6.5,
        "secondary_link": 6.5,
        "tertiary_link": 6.0,
        "unclassified": 6.0,
        "residential": 6.0,
        "road": 6.0,
        "busway": 6.0,
        "living_street": 5.0,
        "pedestrian": 5.0,
        "service": 4.0,
        "track": 3.0,
    }
)
#: Classes that exist in OSM but are excluded unless configured in.
EXCLUDED_BY_DEFAULT: frozenset[str] = frozenset(
    {"footway", "path", "steps", "cycleway", "bridleway", "corridor", "sidewalk", "crossing",
     "elevator", "platform", "proposed", "construction", "abandoned", "raceway", "bus_stop"}
)
LANE_WIDTH_M = 3.5
#: Width for an included class missing from the table (e.g. a user's own class names).
FALLBACK_WIDTH_M = 6.0
_MIN_WIDTH_M, _MAX_WIDTH_M = 1.0, 60.0


@dataclass(frozen=True)
class RoadConfig:
    """Which highway classes are drawn and how wide.

    Parameters
    ----------
    classes
        Highway classes to draw; default all classes of :data:`ROAD_WIDTHS_M`.
    widths_m
        Per-class width overrides in metres.
    """

    classes: frozenset[str] = frozenset(ROAD_WIDTHS_M)
    widths_m: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.classes, (set, frozenset)) or not all(isinstance(c, str) and c for c in self.classes):
            raise ConfigError(f"highway classes must be a set of class names such as 'residential', got {self.classes!r}",
                              param="road_classes")
        for highway, width in self.widths_m.items():
            check_number(width, "road_widths", f"width of highway={highway} (m)", minimum=_MIN_WIDTH_M, maximum=_MAX_WIDTH_M)

    def width_for(self, highway: str) -> float:
        """Default width in metres of one highway class."""
        return float(self.widths_m.get(highway, ROAD_WIDTHS_M.get(highway, FALLBACK_WIDTH_M)))


def parse_metres(values: pd.Series) -> np.ndarray:
    """Parse OSM ``width=*`` strings ("7", "7.5 m", "6,5") to metres; NaN where unparsable.

    Values in feet or with other units are NaN so that the class default applies.
    """
    text = values.astype("string").str.strip().str.replace(",", ".", regex=False)
    number = text.str.extract(r"^(\d+(?:\.\d+)?)\s*(?:m|meters?|metres?)?$", expand=False)
    return pd.to_numeric(number, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def road_widths_m(highway: pd.Series, width: pd.Series, lanes: pd.Series, config: RoadConfig) -> np.ndarray:
    """Width in metres for each road: ``width=*``, else ``lanes=*`` × 3.5 m, else the class width."""
    from_class = highway.map(config.width_for).to_numpy(dtype="float64")
    from_lanes = parse_metres(lanes) * LANE_WIDTH_M
    from_tag = parse_metres(width)
    widths = np.where(np.isfinite(from_tag), from_tag, np.where(np.isfinite(from_lanes), from_lanes, from_class))
    return np.clip(widths, _MIN_WIDTH_M, _MAX_WIDTH_M)
