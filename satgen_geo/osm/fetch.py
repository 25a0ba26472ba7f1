"""Download OSM roads and buildings for an AOI from an Overpass API server via osmnx.

osmnx keeps its configuration in module globals and, left to itself, would retry a 429 or
504 every 55 s without end, sleep 60 s when the status endpoint is unreachable, ask
Google's DNS-over-HTTPS when local DNS fails, and leave ``socket.getaddrinfo`` patched.
:func:`fetch_osm` therefore sets osmnx up only for the duration of one call (under a lock)
and turns every HTTP error into an exception from a ``requests`` response hook, so that
retries, back-off and caching are decided here: error responses never reach the cache.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import requests
from shapely.geometry import MultiPolygon, Polygon
from urllib3.exceptions import NewConnectionError

from satgen_geo._cache import cache_dir as default_cache_dir
from satgen_geo._validate import check_int, check_number
from satgen_geo.errors import AOIError, AreaTooLargeError, ConfigError, OSMDownloadError
from satgen_geo.grid import AOI, WGS84, area_km2
from satgen_geo.osm.files import RAW_COLUMNS

log = logging.getLogger(__name__)

_TAGS: dict[str, bool | str | list[str]] = {"highway": True, "building": True}
_OFFLINE_HINT = "work offline with a local OSM extract (.osm/.osm.pbf/.gpkg)"
_SETTINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class OverpassConfig:
    """Where and how to query Overpass.

    Parameters
    ----------
    url
        Overpass API base URL, without the trailing ``/interpreter``.
    cache_dir
        Folder for cached responses; ``None`` is ``satgen_geo._cache.cache_dir() / "overpass"``.
    use_cache
        Read and write the response cache.
    timeout_s
        HTTP timeout in seconds; also sent to the server (rounded up) as the query timeout.
    max_retries
        Retries after an HTTP 429/5xx, a timeout or a dropped connection.
    backoff_s
        Wait ``backoff_s * 2**attempt`` seconds before retry ``attempt + 1``.
    max_area_km2
        Larger AOIs are refused before any request.
    """

    url: str = "https://overpass-api.de/api"
    cache_dir: Path | None = None
    use_cache: bool = True
    timeout_s: float = 180.0
    max_retries: int = 4
    backoff_s: float = 2.0
    max_area_km2: float = 50.0

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"Overpass address must be an http(s) URL, got {self.url!r}", param="overpass_url")
        check_number(self.timeout_s, "overpass_timeout_s", "Overpass timeout (s)", minimum=0.0, open_min=True)
        check_int(self.max_retries, "overpass_retries", "Overpass retries", minimum=0, maximum=20)
        check_number(self.backoff_s, "overpass_backoff_s", "Overpass back-off (s)", minimum=0.0, maximum=600.0)
        check_number(self.max_area_km2, "max_area_km2", "Overpass download limit (km2)", minimum=0.0, open_min=True)


class _HTTPStatusError(Exception):
    """An HTTP error status from Overpass, raised inside requests by :func:`_check_response`."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code} {response.reason or ''}".strip())
        self.retryable = response.status_code == 429 or response.status_code >= 500


class _RemarkError(Exception):
    """A 200 response whose ``remark`` says the query failed (timeout, out of memory)."""


def fetch_osm(aoi: AOI, config: OverpassConfig = OverpassConfig()) -> gpd.GeoDataFrame:
    """Download highway=* and building=* features intersecting the AOI polygon via osmnx.

    Parameters
    ----------
    aoi
        Area of interest, in any CRS.
    config
        Server, cache, retry and size settings.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326 frame with object columns ``highway``, ``building``, ``width``, ``lanes``
        and one row per way or relation (nodes dropped), on a RangeIndex; empty, with those
        columns, when the AOI has no such features.

    Raises
    ------
    AOIError
        If the AOI is not a valid, non-empty polygon.
    AreaTooLargeError
        If the AOI is larger than ``config.max_area_km2``.
    OSMDownloadError
        If Overpass cannot be reached, or still fails after ``config.max_retries`` retries.
    """
    polygon = check_download_area(aoi, config)
    import osmnx as ox  # here, not at the top: reading local files should not pay for importing osmnx
    from osmnx._errors import InsufficientResponseError

    for attempt in range(config.max_retries + 1):
        try:
            with _osmnx_settings(config):
                return _to_raw_frame(ox.features_from_polygon(polygon, tags=_TAGS))
        except Exception as err:  # noqa: BLE001  -- sorted by _retry_reason, which re-raises the unknown
            if isinstance(err, InsufficientResponseError) and err.__cause__ is None:
                return _to_raw_frame(None)  # osmnx's way of saying "no matching features"
            reason = _retry_reason(err, config)
        if attempt < config.max_retries:
            wait = config.backoff_s * 2**attempt
            log.warning("Overpass at %s: %s; retry %d/%d in %.3g s", config.url, reason,
                        attempt + 1, config.max_retries, wait)
            time.sleep(wait)
    raise OSMDownloadError(
        f"Overpass at {config.url} still failing after {config.max_retries + 1} attempts ({reason}); "
        f"try again later or {_OFFLINE_HINT}", param="osm_file",
    )


def _retry_reason(err: Exception, config: OverpassConfig) -> str:
    """Why a failed request is worth retrying; an :class:`OSMDownloadError` when it is not."""
    from osmnx._errors import InsufficientResponseError, ResponseStatusCodeError

    url = config.url
    if isinstance(err, InsufficientResponseError):  # a 200 response that was not JSON
        raise OSMDownloadError(f"Overpass at {url} sent a response that is not JSON; check the address or {_OFFLINE_HINT}",
                               param="overpass_url") from None
    if isinstance(err, _HTTPStatusError):
        if err.retryable:
            return str(err)
        raise OSMDownloadError(f"Overpass at {url} refused the query ({err}); check the address or {_OFFLINE_HINT}",
                               param="overpass_url") from None
    if isinstance(err, _RemarkError):
        raise OSMDownloadError(f"Overpass at {url} could not run the query ({err}); split the area, raise the timeout, "
                               f"or {_OFFLINE_HINT}", param="osm_file") from None
    if isinstance(err, requests.Timeout):
        return f"no answer within {config.timeout_s:g} s"
    if isinstance(err, requests.ConnectionError):
        if (unreachable := _unreachable_reason(err)) is not None:
            raise OSMDownloadError(f"cannot reach Overpass at {url} ({unreachable}); check your connection or "
                                   f"{_OFFLINE_HINT}", param="osm_file") from None
        return "connection dropped"
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        return "connection dropped mid-response"
    if isinstance(err, (requests.RequestException, ResponseStatusCodeError)):
        raise OSMDownloadError(f"cannot query Overpass at {url} ({type(err).__name__}); check the address or "
                               f"{_OFFLINE_HINT}", param="overpass_url") from None
    if isinstance(err, OSError):  # after requests' errors, which are OSErrors too: the cache folder
        raise OSMDownloadError(f"cannot use the Overpass cache folder {_cache_folder(config)} ({err.strerror or err}); "
                               "point SATGEN_CACHE_DIR at a writable folder") from None
    raise err


def check_download_area(aoi: AOI, config: OverpassConfig) -> Polygon | MultiPolygon:
    """The AOI as a valid EPSG:4326 (multi)polygon no larger than ``config.max_area_km2``.

    Raises :class:`AOIError` or :class:`AreaTooLargeError`; no request is made.
    """
    max_area_km2 = config.max_area_km2
    geom = aoi.to_crs(WGS84).geometry
    if not isinstance(geom, (Polygon, MultiPolygon)) or geom.is_empty or not geom.is_valid:
        raise AOIError(f"the AOI must be a valid, non-empty polygon; got {geom.geom_type}", param="aoi_file")
    area = area_km2(aoi)
    if area > max_area_km2:
        raise AreaTooLargeError(
            f"AOI is {area:.1f} km2, over the Overpass download limit of {max_area_km2:g} km2; "
            "split the area, raise the download limit, or use a local OSM extract",
            param="max_area_km2",
        )
    return geom


@contextmanager
def _osmnx_settings(config: OverpassConfig) -> Iterator[None]:
    """Point osmnx at ``config`` for the duration of the block, then restore its settings."""
    query_timeout = max(math.ceil(config.timeout_s), 1)
    temporary: dict[str, Any] = {
        "overpass_url": config.url.rstrip("/"),
        "cache_folder": str(_cache_folder(config)),
        "use_cache": config.use_cache,
        "cache_only_mode": False,
        "requests_timeout": config.timeout_s,
        # the query's server-side timeout must be an integer; it is part of the cache key
        "overpass_settings": f"[out:json][timeout:{query_timeout}]{{maxsize}}",
        # osmnx's slot check sleeps 60 s when /status is unreachable; 429s back off here instead
        "overpass_rate_limit": False,
        "doh_url_template": None,  # no DNS-over-HTTPS fallback to a third party
        "requests_kwargs": {"hooks": {"response": [_check_response]}},
        "default_crs": "epsg:4326",
        "log_console": False,
        "log_file": False,
    }
    import osmnx as ox

    with _SETTINGS_LOCK:
        saved = {name: getattr(ox.settings, name) for name in temporary}
        getaddrinfo = socket.getaddrinfo  # osmnx replaces it to pin the server's IP
        try:
            for name, value in temporary.items():
                setattr(ox.settings, name, value)
            yield
        finally:
            for name, value in saved.items():
                setattr(ox.settings, name, value)
            socket.getaddrinfo = getaddrinfo


def _cache_folder(config: OverpassConfig) -> Path:
    return config.cache_dir or default_cache_dir() / "overpass"


def _check_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """requests response hook: raise on an error status or a failed-query remark.

    Raising here, inside ``requests.post``, keeps osmnx from sleeping and retrying on its
    own and from seeing (let alone caching) the response.
    """
    if response.status_code >= 400:
        raise _HTTPStatusError(response)
    if b'"remark"' in response.content:
        try:
            remark = json.loads(response.content).get("remark")
        except (ValueError, AttributeError):
            return  # let osmnx report the unreadable body
        if isinstance(remark, str) and ("error" in remark.lower()):
            raise _RemarkError(" ".join(remark.split())[:200])


def _unreachable_reason(err: requests.ConnectionError) -> str | None:
    """Why no connection could be opened (refused, DNS, no route), or None for other failures."""
    reason = getattr(err.args[0], "reason", None) if err.args else None
    if not isinstance(reason, NewConnectionError):
        return None
    cause = reason.__cause__
    return getattr(cause, "strerror", None) or type(cause or reason).__name__


def _to_raw_frame(features: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame:
    """osmnx features (or None for none) as the raw frame: ways and relations, fixed columns."""
    if features is None:
        rows = pd.DataFrame({"geometry": pd.Series(dtype=object)})
    else:
        rows = features.reset_index()
        rows = rows[rows["element"] != "node"].reset_index(drop=True)
    data = {
        col: (rows[col].astype(object).where(rows[col].notna(), None) if col in rows
              else pd.Series([None] * len(rows), dtype=object))
        for col in RAW_COLUMNS
    }
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(rows["geometry"].to_numpy(), crs=WGS84), crs=WGS84)
