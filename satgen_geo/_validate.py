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


def check_int(value: object, param: str, what: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) in ``[minimum, maximum]``.

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
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{what} must be a whole number {_range(minimum, maximum)}, got {value!r}", param=param)
    return value


def check_number(
    value: object, param: str, what: str, *, minimum: float = 0.0, maximum: float | None = None, open_min: bool = False
) -> float:
    """``value`` as a finite ``float`` in ``[minimum, maximum]`` (``(minimum, …`` with ``open_min``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        low_ok = value > minimum if open_min else value >= minimum
        ok = low_ok and (maximum is None or value <= maximum)
    if not ok:
        low = f"above {minimum:g}" if open_min else f"at least {minimum:g}"
        high = "" if maximum is None else f" and at most {maximum:g}"
        raise ConfigError(f"{what} must be a number {low}{high}, got {value!r}", param=param)
    return float(value)  # type: ignore[arg-type]


def check_choice(value: T, param: str, what: str, choices: Collection[T]) -> T:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        listed = ", ".join(str(c) for c in choices)
        raise ConfigError(f"{what} {value!r} is not one of {listed}", param=param)
    return value


def _range(minimum: int, maximum: int | None) -> str:
    return f"of at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
