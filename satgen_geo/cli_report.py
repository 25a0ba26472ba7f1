"""How the ``satgen`` command line talks: errors, log records and warnings, progress.

Errors
    A :class:`~satgen_geo.errors.SatgenError` is one line on stderr, ``Error: <message>
    (--flag)``, exit status 1; the flag is the command's own option for the error's ``param``
    (see :data:`OPTION_NAMES`). With ``--progress json`` the line
    ``{"error": "<message>", "param": "<concept or null>"}`` comes first on stdout. A
    command line that click cannot parse is one ``Error:`` line with exit status 2, as click
    uses. Ctrl-C prints ``Interrupted; unfinished outputs were removed`` (exit 130), SIGTERM
    ``Terminated; unfinished outputs were removed`` (exit 143).
Log records and warnings
    satgen-geo's own records are shown from WARNING on (INFO with ``-v``, DEBUG with
    ``-vv``). Everything else: other libraries' records (rasterio/GDAL, pyogrio, osmnx),
    Python warnings (captured into :mod:`logging`) and the lines that C libraries such as
    libtiff print straight to the stderr file descriptor, is shown only with ``-v``. With
    ``--progress json``, satgen-geo's warnings go to stdout as ``{"warning": "<message>"}``.
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from satgen_geo.errors import SatgenError
from satgen_geo.progress import ProgressFn

#: Error concepts (:data:`satgen_geo.errors.PARAMS`) whose click parameter has another name;
#: every other concept is shown as the command's parameter of the same name, if it has one.
OPTION_NAMES = {
    "gsd_m": "gsd", "aoi_file": "aoi", "osm_file": "osm", "roads_file": "roads", "buildings_file": "buildings",
    "road_classes": "include_highway", "overlap_px": "overlap", "mask": "mask_path", "mask_output": "mask_out",
    "patch_px": "patch", "stride_px": "stride", "model_name": "name", "max_upload_bytes": "max_upload_mb",
    "tile_cache": "tile_cache_mb",
}
INTERRUPTED, TERMINATED = "Interrupted; unfinished outputs were removed", "Terminated; unfinished outputs were removed"
_ROUTE = "satgen.log_route"


def option_for(ctx: click.Context, concept: str | None) -> str | None:
    """How the user wrote the setting ``concept`` in this command: ``--gsd``, ``--osm FILE``, ``MASK.tif``."""
    if concept is None:
        return None
    name = OPTION_NAMES.get(concept, concept)
    for param in ctx.command.params:
        if param.name == name:
            if isinstance(param, click.Option):
                flag = max(param.opts, key=len)
                return f"{flag} {param.metavar}" if param.metavar else flag
            return param.human_readable_name
    return None


def fail(ctx: click.Context, err: SatgenError) -> NoReturn:
    """Print ``err`` as the command line shows errors (see the module docstring) and exit 1."""
    if ctx.params.get("progress_mode") == "json":
        click.echo(json.dumps({"error": str(err), "param": err.param}))
    option = option_for(ctx, err.param)
    click.echo(f"Error: {err}" + (f" ({option})" if option else ""), err=True)
    sys.exit(1)


def stop(message: str, status: int) -> NoReturn:
    """End the process with one line on stderr."""
    click.echo(message, err=True)
    sys.exit(status)


class SatgenCommand(click.Command):
    """A command whose work runs inside the error mapper: no satgen error escapes as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        route = ctx.meta.get(_ROUTE)
        if route is not None and ctx.params.get("progress_mode") == "json":
            route.warnings_as_json()
        try:
            return super().invoke(ctx)
        except SatgenError as err:
            fail(ctx, err)
        except KeyboardInterrupt:
            stop(INTERRUPTED, 130)


class SatgenGroup(click.Group):
    """The ``satgen`` group: its commands are :class:`SatgenCommand`; click's own errors are one line."""

    command_class = SatgenCommand
    group_class = type

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            err.show()
            sys.exit(err.exit_code)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} -h')" if err.ctx is not None else ""
            stop(f"Error: {err.format_message().rstrip('.')}{hint}", err.exit_code)
        except click.ClickException as err:
            stop(f"Error: {err.format_message()}", err.exit_code)
        except (click.Abort, KeyboardInterrupt):
            stop(INTERRUPTED, 130)
        sys.exit(status if isinstance(status, int) else 0)


def start(ctx: click.Context, verbose: int) -> None:
    """Set up what the module docstring describes; called once by the group before any command."""
    capture_native_stderr()
    ctx.meta[_ROUTE] = _LogRoute(verbose)
    # a terminated CLI (e.g. a cancelled QGIS job) unwinds normally, so temporary outputs are removed
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: object) -> None:
    stop(TERMINATED, 128 + signum)


class _LogRoute(logging.Filter):
    """The stderr handler's filter, and the switch that sends satgen-geo's warnings to stdout as JSON."""

    def __init__(self, verbose: int) -> None:
        super().__init__()
        self.verbose, self.json = verbose, False
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler.addFilter(self)
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.WARNING - 10 * min(verbose, 2))
        logging.captureWarnings(True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not _ours(record):
            return self.verbose > 0
        return not (self.json and record.levelno >= logging.WARNING)

    def warnings_as_json(self) -> None:
        """From now on print satgen-geo's warnings as ``{"warning": …}`` lines on stdout, not stderr."""
        self.json = True
        handler = _JsonWarnings(logging.WARNING)
        handler.addFilter(_ours)
        logging.getLogger().addHandler(handler)


def _ours(record: logging.LogRecord) -> bool:
    return record.name == "satgen_geo" or record.name.startswith("satgen_geo.")


class _JsonWarnings(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(json.dumps({"warning": record.getMessage()}))
        sys.stdout.flush()


def capture_native_stderr() -> None:
    """Send what C libraries print straight to file descriptor 2 into :mod:`logging` (logger ``native``).

    libtiff, under GDAL, prints some errors itself (nine ``_tiffWriteProc: No space left on
    device.`` lines on a full disk) around Python's logging. File descriptor 2 becomes a pipe
    read line by line into the log, and ``sys.stderr`` keeps writing to the real stderr. A
    crash of the process (a fatal signal) is still reported on the real stderr, through
    :mod:`faulthandler`. POSIX only.
    """
    if os.name != "posix" or sys.stderr is None:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
    except (OSError, ValueError):
        return
    sys.stderr = open(real, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")  # noqa: SIM115
    faulthandler.enable(file=sys.stderr)  # a crash's traceback goes to the real stderr, not into the pipe
    pump = threading.Thread(target=_pump, args=(read_fd,), name="satgen-native-stderr", daemon=True)
    pump.start()

    def restore() -> None:
        os.dup2(real, 2)  # closes the pipe's last write end: the pump reads to its end and stops
        pump.join(timeout=1.0)

    atexit.register(restore)


def _pump(read_fd: int) -> None:
    native = logging.getLogger("native")
    with open(read_fd, encoding="utf-8", errors="replace") as pipe:
        for line in pipe:
            if line.strip():
                native.warning("%s", line.rstrip())


@contextmanager
def progress_reporter(mode: str) -> Iterator[ProgressFn | None]:
    """Adapt ``progress(done, total, stage)`` to tqdm bars, JSON lines on stdout, or nothing."""
    if mode == "none":
        yield None
    elif mode == "json":
        def emit(done: int, total: int, stage: str) -> None:
            click.echo(json.dumps({"stage": stage, "done": done, "total": total}), nl=True)
            sys.stdout.flush()
        yield emit
    else:
        from tqdm import tqdm

        bars: dict[str, Any] = {}

        def update(done: int, total: int, stage: str) -> None:
            bar = bars.get(stage) or bars.setdefault(stage, tqdm(total=total, desc=stage, leave=True))
            bar.total = total
            bar.update(done - bar.n)

        try:
            yield update
        finally:
            for bar in bars.values():
                bar.close()
