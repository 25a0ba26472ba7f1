"""Run the toolkit's ``satgen`` command for one Processing algorithm.

``run_satgen`` starts ``satgen <command> … --progress json``, turns its JSON progress
lines into ``feedback.setProgress``, forwards its log lines to the Processing log, polls
``feedback.isCanceled()`` and stops the process when asked, and turns a failure into a
``QgsProcessingException`` carrying the command's ``Error: …`` line. After a cancel or a
failure nothing this run created is left at the destinations.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from qgis.core import QgsProcessingException, QgsSettings

from .toolkit import SETTING_NAME, ToolkitNotFound, find_command

#: Progress range (start %, end %) of each stage the CLI reports, per command.
STAGES: Dict[str, Dict[str, Tuple[float, float]]] = {
    "mask": {"features": (0.0, 30.0), "rasterize": (30.0, 100.0)},
    "render": {"render": (0.0, 100.0)},
    # Rendering dominates the run time; the features are read and the mask drawn first.
    "generate": {"features": (0.0, 5.0), "rasterize": (5.0, 15.0), "render": (15.0, 100.0)},
}
#: What the progress dialog says during each stage.
STAGE_TEXT = {
    "features": "Reading OpenStreetMap features…",
    "rasterize": "Drawing the mask…",
    "render": "Rendering imagery…",
}
#: Seconds to wait after each stop request (interrupt, terminate) before escalating.
STOP_GRACE_S = 5.0
_POLL_S = 0.1
_WINDOWS = sys.platform.startswith("win")
#: Variables of QGIS's own Python/PROJ/GDAL that must not leak into the toolkit's Python.
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE",
                 "PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "GDAL_DRIVER_PATH", "GDAL_PLUGINS", "QGIS_PREFIX_PATH")


def configured_location() -> str:
    """The toolkit path from the Processing setting ('' when unset)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        value = ProcessingConfig.getSetting(SETTING_NAME)
    except ImportError:  # Processing plugin not loaded: read the stored value directly
        value = QgsSettings().value(f"Processing/Configuration/{SETTING_NAME}", "")
    return str(value or "").strip()


def toolkit_command() -> List[str]:
    """The ``satgen`` command prefix, or a QgsProcessingException saying how to install it."""
    try:
        return find_command(configured_location())
    except ToolkitNotFound as err:
        raise QgsProcessingException(str(err)) from None


def run_satgen(command: str, args: Sequence[str], feedback, outputs: Iterable[str] = ()) -> None:
    """Run ``satgen <command> <args> --progress json`` to completion.

    Parameters
    ----------
    command
        ``mask``, ``render`` or ``generate``.
    args
        The command's options and arguments.
    feedback
        The algorithm's ``QgsProcessingFeedback`` (may be ``None``).
    outputs
        Files the command writes; on cancel or failure whatever this run left there is removed.

    Raises
    ------
    QgsProcessingException
        When the toolkit is missing, the command fails (its ``Error:`` line), or on cancel.
    """
    prefix = toolkit_command()
    argv = [*prefix, command, *[str(a) for a in args], "--progress", "json"]
    if feedback is not None:
        feedback.pushCommandInfo(" ".join(shlex.quote(a) for a in argv))
    guard = _OutputGuard([o for o in outputs if o])
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_child_env(), encoding="utf-8", errors="replace", bufsize=1,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if _WINDOWS else 0,
        )
    except OSError as err:
        raise QgsProcessingException(f"Cannot start the SatGen toolkit ({argv[0]}): {err}") from None
    progress = _Progress(STAGES.get(command, {}), feedback)
    errors: List[str] = []
    tail: List[str] = []
    canceled = False
    try:
        lines: "queue.Queue[Tuple[str, Optional[str]]]" = queue.Queue()
        readers = [_reader(process.stdout, "out", lines), _reader(process.stderr, "err", lines)]
        open_streams, exited_at = 2, None
        while open_streams or process.poll() is None:
            if feedback is not None and feedback.isCanceled():
                canceled = True
                stop(process)
                break
            if exited_at is None and process.poll() is not None:
                exited_at = time.monotonic()
            elif exited_at is not None and time.monotonic() - exited_at > STOP_GRACE_S:
                break  # a leftover child of the toolkit keeps the pipes open; stop reading
            try:
                stream, line = lines.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            elif stream == "out":
                progress.line(line)
            else:
                _log_line(line, feedback, errors, tail)
        process.wait()
        for thread in readers:
            thread.join(timeout=STOP_GRACE_S)
        while not lines.empty():  # lines read after the loop stopped (cancel)
            stream, line = lines.get_nowait()
            if line is not None and stream == "err":
                _log_line(line, feedback, errors, tail, quiet=canceled)
    except BaseException:
        stop(process)
        guard.clean()
        raise
    if canceled:
        guard.clean()
        raise QgsProcessingException("Canceled by the user; no output was written.")
    if process.returncode != 0:
        guard.clean()
        if errors:
            raise QgsProcessingException(errors[-1])
        detail = " | ".join(tail[-5:]) or "no error message"
        raise QgsProcessingException(f"satgen {command} failed with exit status {process.returncode}: {detail}")
    progress.finish()


def stop(process: subprocess.Popen) -> None:
    """Stop a running process: interrupt (clean exit), then terminate, then kill."""
    if process.poll() is not None:
        return
    steps = [lambda: process.terminate(), lambda: process.kill()]
    if not _WINDOWS:
        # SIGINT lets the toolkit unwind (KeyboardInterrupt) and delete its partial files.
        steps.insert(0, lambda: process.send_signal(signal.SIGINT))
    for step in steps:
        try:
            step()
        except OSError:  # already gone
            pass
        try:
            process.wait(timeout=STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def _child_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _reader(stream, name: str, lines: "queue.Queue") -> threading.Thread:
    def pump() -> None:
        try:
            for line in stream:
                lines.put((name, line.rstrip("\r\n")))
        except (OSError, ValueError):
            pass
        finally:
            lines.put((name, None))

    thread = threading.Thread(target=pump, name=f"satgen-{name}", daemon=True)
    thread.start()
    return thread


def _log_line(line: str, feedback, errors: List[str], tail: List[str], quiet: bool = False) -> None:
    text = line.strip()
    if not text:
        return
    tail.append(text)
    del tail[:-20]
    if text.startswith("Error:"):
        errors.append(text)
        return
    if feedback is None or quiet:
        return
    if text.startswith(("WARNING:", "Warning:")) or "Warning" in text.split(":", 1)[0]:
        feedback.pushWarning(text)
    else:
        feedback.pushInfo(text)


class _Progress:
    """Maps ``{"stage", "done", "total"}`` lines onto one monotonic 0–100 % bar."""

    def __init__(self, stages: Dict[str, Tuple[float, float]], feedback) -> None:
        self.stages, self.feedback, self.value, self.stage = stages, feedback, 0.0, ""

    def line(self, line: str) -> None:
        try:
            event = json.loads(line)
            stage, done, total = event["stage"], float(event["done"]), float(event["total"])
        except (ValueError, KeyError, TypeError):
            if line.strip() and self.feedback is not None:
                self.feedback.pushInfo(line.strip())
            return
        if stage != self.stage and self.feedback is not None:
            self.feedback.setProgressText(STAGE_TEXT.get(stage, stage))
        self.stage = stage
        start, end = self.stages.get(stage, (self.value, self.value))
        fraction = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
        self._set(start + (end - start) * fraction)

    def finish(self) -> None:
        self._set(100.0)

    def _set(self, value: float) -> None:
        if value > self.value:
            self.value = value
            if self.feedback is not None:
                self.feedback.setProgress(value)


class _OutputGuard:
    """Remembers the destinations before a run so that a failed run leaves nothing behind.

    Removes outputs created or changed by this run, the toolkit's ``.NAME.*.partial`` files
    and its ``satgen-*`` scratch folders that appeared beside them during the run.
    """

    def __init__(self, outputs: Sequence[str]) -> None:
        self.outputs = [Path(o) for o in outputs]
        self.before = {p: _stamp(p) for p in self.outputs}
        self.listing = {d: set(_listdir(d)) for d in {p.parent for p in self.outputs}}

    def clean(self) -> None:
        for path in self.outputs:
            stamp = _stamp(path)
            if stamp is not None and stamp != self.before[path]:
                _remove(path)
        names = {p.name for p in self.outputs}
        for folder, old in self.listing.items():
            for entry in set(_listdir(folder)) - old:
                partial = entry.startswith(".") and entry.endswith(".partial") and any(
                    entry.startswith(f".{name}.") for name in names)
                if partial or entry.startswith("satgen-"):
                    _remove(folder / entry)


def _stamp(path: Path) -> Optional[Tuple[int, int, int]]:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _listdir(folder: Path) -> List[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _remove(path: Path) -> None:
    # The toolkit may still hold a handle for a moment after it exits (Windows).
    for _ in range(10):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            return
        except OSError:
            time.sleep(0.2)
