"""Progress and cancel callables passed into the core; front ends adapt them."""

from __future__ import annotations

from collections.abc import Callable

from satgen_geo.errors import CancelledError

#: ``progress(done, total, stage)``: ``done`` of ``total`` units of the named stage finished.
ProgressFn = Callable[[int, int, str], None]
#: ``cancel()`` returns True when the caller wants the work to stop.
CancelFn = Callable[[], bool]


def _no_progress(done: int, total: int, stage: str) -> None:
    """Default progress callable: does nothing."""


def report(progress: ProgressFn | None) -> ProgressFn:
    """``progress`` or a no-op."""
    return progress or _no_progress


def check_cancel(cancel: CancelFn | None) -> None:
    """Raise :class:`CancelledError` if ``cancel`` says so."""
    if cancel is not None and cancel():
        raise CancelledError("cancelled by the user; unfinished outputs were removed")
