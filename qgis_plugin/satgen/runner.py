"""Run the toolkit's ``satgen`` command for one Processing algorithm.

``run_satgen`` starts ``satgen <command> … --progress json`` and reads its stdout lines:
``{"stage", "done", "total"}`` becomes ``feedback.setProgress``, ``{"warning": …}`` a
warning shown prominently, ``{"error": …, "param": …}`` the :class:`ToolkitError` raised
when the command fails (``param`` names the setting as a concept of
``satgen_geo.errors.PARAMS``). Its stderr log lines go to the Processing log. It polls
``feedback.isCanceled()`` and stops the process when asked. After a cancel or a failure
nothing this run created is left at the destinations, except finished outputs named in
``keep_after`` (a mask whose image part was cancelled).
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
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from qgis.core import QgsProcessingException, QgsSettings

from .toolkit import SETTING_NAME, ToolkitNotFound, cached, child_env, describe, find_command

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


class ToolkitError(QgsProcessingException):
    """The toolkit command failed: ``Error: <message>``; ``param`` is the concept it names, if any."""

    def __init__(self, message: str, param: Optional[str] = None) -> None:
        super().__init__(f"Error: {message}")
        self.message, self.param = message, param


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


def toolkit_status() -> str:
    """One line about the configured toolkit, without running it: what was found, or how to fix it."""
    location = configured_location()
    found = cached(location)
    if found is not None:
        return f"SatGen toolkit: {found.summary()}"
    try:
        command = find_command(location)
    except ToolkitNotFound as err:
        return f"SatGen toolkit not found. {err}"
    return f"SatGen toolkit: {describe(command)} (being checked; its version and device show here once known)"


def run_satgen(command: str, args: Sequence[str], feedback, outputs: Iterable[str] = (),
               stage_text: Optional[Mapping[str, str]] = None, keep_after: Optional[Mapping[str, str]] = None) -> None:
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
    stage_text
        What the progress dialog says during a stage, where it differs from :data:`STAGE_TEXT`.
    keep_after
        Output path → stage: the output is finished once that stage has started and is kept
        even if the run is cancelled or fails later (the mask of ``generate``).

    Raises
    ------
    ToolkitError
        When the command fails: its error message and the concept it names.
    QgsProcessingException
        When the toolkit is missing, or on cancel.
    """
    argv = [*toolkit_command(), command, *[str(a) for a in args], "--progress", "json"]
    if feedback is not None:
        found = cached(configured_location())
        if found is not None:
            feedback.pushInfo(f"SatGen toolkit: {found.summary()}")
        feedback.pushCommandInfo(" ".join(shlex.quote(a) for a in argv))
    guard = _OutputGuard([o for o in outputs if o])
    session = _Session(STAGES.get(command, {}), feedback, {**STAGE_TEXT, **(stage_text or {})})
    process = _start(argv)
    try:
        canceled = session.follow(process)
    except BaseException:
        guard.clean()
        raise
    if canceled or process.returncode != 0:
        kept = guard.clean(keep=[str(Path(path)) for path, stage in (keep_after or {}).items()
                                 if stage in session.stages_seen])
        note = "".join(f" The finished output {path} was kept." for path in kept)
        if canceled:
            raise QgsProcessingException(("Canceled by the user." + note) if kept else
                                         "Canceled by the user; no output was written.")
        raise session.failure(command, process.returncode, note)
    session.finish()


def _start(argv: List[str]) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=child_env(), encoding="utf-8", errors="replace", bufsize=1,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if _WINDOWS else 0,
        )
    except OSError as err:
        raise QgsProcessingException(f"Cannot start the SatGen toolkit ({argv[0]}): {err}") from None


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


class _Session:
    """Follows one toolkit process: progress, warnings, errors and log lines.

    stdout carries JSON lines (``stage``/``done``/``total`` progress, ``warning``, ``error``
    with ``param``); stderr carries log lines and the CLI's own ``Error: …`` line, used
    only when no JSON error came (an older toolkit, a crash).
    """

    def __init__(self, stages: Dict[str, Tuple[float, float]], feedback, stage_text: Mapping[str, str]) -> None:
        self.stages, self.feedback, self.stage_text = stages, feedback, stage_text
        self.value, self.stage = 0.0, ""
        self.stages_seen: Set[str] = set()
        self.error: Optional[Tuple[str, Optional[str]]] = None
        self.error_lines: List[str] = []
        self.tail: List[str] = []
        self.warnings: Set[str] = set()

    def follow(self, process: subprocess.Popen) -> bool:
        """Read the process's output until it ends; stop it on cancel. True if cancelled."""
        canceled = False
        try:
            lines: "queue.Queue[Tuple[str, Optional[str]]]" = queue.Queue()
            readers = [_reader(process.stdout, "out", lines), _reader(process.stderr, "err", lines)]
            open_streams, exited_at = 2, None
            while open_streams or process.poll() is None:
                if self.feedback is not None and self.feedback.isCanceled():
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
                else:
                    self.line(stream, line)
            process.wait()
            for thread, pipe in zip(readers, (process.stdout, process.stderr)):
                thread.join(timeout=STOP_GRACE_S)
                if not thread.is_alive():  # a pipe a leftover child still holds stays with its reader
                    pipe.close()
            while not lines.empty():  # lines read after the loop stopped (cancel)
                stream, line = lines.get_nowait()
                if line is not None:
                    self.line(stream, line, quiet=canceled)
        except BaseException:
            stop(process)
            raise
        return canceled

    def line(self, stream: str, line: str, quiet: bool = False) -> None:
        text = line.strip()
        if not text:
            return
        if stream == "out" and text.startswith("{"):
            try:
                event = json.loads(text)
            except ValueError:
                event = None
            if isinstance(event, dict) and self._event(event, quiet):
                return
        self.tail = (self.tail + [text])[-20:]
        if text.startswith("Error:"):
            self.error_lines.append(text)
        elif self.feedback is not None and not quiet:
            if text.startswith(("WARNING:", "Warning:")) or "Warning" in text.split(":", 1)[0]:
                if text.split(":", 1)[-1].strip() not in self.warnings:
                    self.feedback.pushWarning(text)
            else:
                self.feedback.pushInfo(text)

    def _event(self, event: dict, quiet: bool) -> bool:
        """Handle one JSON line; False if it is none of the known kinds."""
        if "error" in event:
            self.error = (str(event["error"]), event.get("param") or None)
        elif "warning" in event:
            text = str(event["warning"]).strip()
            if self.feedback is not None and not quiet and text not in self.warnings:
                self.feedback.reportError(f"Warning: {text}", False)
            self.warnings.add(text)
        elif {"stage", "done", "total"} <= set(event):
            try:
                self._progress(str(event["stage"]), float(event["done"]), float(event["total"]))
            except (TypeError, ValueError):
                return False
        else:
            return False
        return True

    def _progress(self, stage: str, done: float, total: float) -> None:
        if stage != self.stage and self.feedback is not None:
            self.feedback.setProgressText(self.stage_text.get(stage, stage))
        self.stage = stage
        self.stages_seen.add(stage)
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

    def failure(self, command: str, returncode: int, note: str = "") -> ToolkitError:
        """The exception for a failed run: the JSON error, else the ``Error:`` line, else the log tail."""
        if self.error is not None:
            return ToolkitError(self.error[0] + note, self.error[1])
        if self.error_lines:
            return ToolkitError(self.error_lines[-1][len("Error:"):].strip() + note)
        detail = " | ".join(self.tail[-5:]) or "no error message"
        return ToolkitError(f"satgen {command} failed with exit status {returncode}: {detail}{note}")


class _OutputGuard:
    """Remembers the destinations before a run so that a failed run leaves nothing behind.

    Removes outputs created or changed by this run, the toolkit's ``.NAME.*.partial`` files
    and its ``satgen-*`` scratch folders that appeared beside them during the run.
    """

    def __init__(self, outputs: Sequence[str]) -> None:
        self.outputs = [Path(o) for o in outputs]
        self.before = {p: _stamp(p) for p in self.outputs}
        self.listing = {d: set(_listdir(d)) for d in {p.parent for p in self.outputs}}

    def clean(self, keep: Iterable[str] = ()) -> List[str]:
        """Remove what the run left; outputs in ``keep`` that it finished stay. Returns those kept."""
        kept = []
        for path in self.outputs:
            stamp = _stamp(path)
            if stamp is not None and stamp != self.before[path]:
                if str(path) in keep:
                    kept.append(str(path))
                else:
                    _remove(path)
        names = {p.name for p in self.outputs}
        for folder, old in self.listing.items():
            for entry in set(_listdir(folder)) - old:
                partial = entry.startswith(".") and entry.endswith(".partial") and any(
                    entry.startswith(f".{name}.") for name in names)
                if partial or entry.startswith("satgen-"):
                    _remove(folder / entry)
        return kept


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
