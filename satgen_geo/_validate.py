"""One way to check a setting: used by every config dataclass's ``__post_init__``.

Each check raises :class:`~satgen_geo.errors.ConfigError` carrying ``param`` (the concept,
see :data:`satgen_geo.errors.PARAMS`) with a one-line message that names the concept and the
accepted range, never a front end's flag.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TypeVar

from satgen_geo.errors import ConfigError

T = TypeVar("T")


def check_int(
    value: object, param: str, what: str, *, minimum: int = 1, maximum: int | None = None, multiple_of: int = 1
) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) in ``[minimum, maximum]`` and a multiple of ``multiple_of``.

    Parameters
    ----------
    value
        The setting as given.
    param
        Its concept name, carried by the error.
    what
        How the message names it, e.g. ``"batch size"``.
    minimum, maximum
        Accepted range, inclusive; ``maximum=None`` for no upper bound.
    multiple_of
        The value must be a multiple of this (1: any whole number).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value % multiple_of \
            or (maximum is not None and value > maximum):
        multiple = f", a multiple of {multiple_of}" if multiple_of > 1 else ""
        raise ConfigError(f"{what} must be a whole number {_range(minimum, maximum)}{multiple}, got {_shown(value)}", param=param)
    return value


def check_number(
    value: object, param: str, what: str, *, minimum: float = 0.0, maximum: float | None = None, open_min: bool = False
) -> float:
    """``value`` as a finite ``float`` in ``[minimum, maximum]`` (``(minimum, …`` with ``open_min``)."""
    number = _as_float(value)
    low_ok = number > minimum if open_min else number >= minimum
    if not (math.isfinite(number) and low_ok and (maximum is None or number <= maximum)):
        low = f"above {minimum:g}" if open_min else f"at least {minimum:g}"
        high = "" if maximum is None else f" and at most {maximum:g}"
        raise ConfigError(f"{what} must be a number {low}{high}, got {_shown(value)}", param=param)
    return number


def check_choice(value: T, param: str, what: str, choices: Collection[T]) -> T:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        listed = ", ".join(str(c) for c in choices)
        raise ConfigError(f"{what} {_shown(value)} is not one of {listed}", param=param)
    return value


def _range(minimum: int, maximum: int | None) -> str:
    return f"of at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"


def _as_float(value: object) -> float:
    """``value`` as a float; NaN for anything that is not a real number (bools included), inf when too large."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf


def _shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, shortened: a hostile input must not make the one-line message huge."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
