"""Safe outputs: checked before work, written under a temporary name, renamed on success.

Temporary files and folders carry the writing process's id and a tag of its host in their
names (``.out.tif.<pid>-<host>-<random>.partial``, ``satgen-<pid>-<host>-…``). A process
killed outright (SIGKILL, power loss) cannot remove them, so every later run that writes into
the same folder removes those whose process no longer runs on this host and that have not
changed for :data:`STALE_AFTER_S` seconds (POSIX only; elsewhere they are left alone).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from satgen_geo.errors import PARAMS, InputFileError, OutputError, SatgenError

log = logging.getLogger(__name__)

#: Temporary files and folders left by a dead process are removed once unchanged this long.
STALE_AFTER_S = 600.0
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
_OWNER = r"(?P<pid>\d+)-(?P<host>[0-9a-f]{8})"
_STALE_FILE = re.compile(rf"^\..+\.{_OWNER}-[0-9a-f]{{8}}\.partial(?:\.work\.tif)?$")
_STALE_DIR = re.compile(rf"^satgen-(?:osm-)?{_OWNER}-\w+$")

PathLike = str | os.PathLike[str]


def check_writable(path: PathLike, param: str = "output") -> Path:
    """Fail early, before any heavy work, if ``path`` cannot be written."""
    path = Path(path).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give a file name such as {path / 'out.tif'}", param=param)
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist; create it or choose another output path", param=param)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write {path}: permission denied; choose another output path", param=param)
    return path


def ensure_dir(folder: PathLike, param: str = "output") -> Path:
    """Create the output folder ``folder`` (and its parents) if needed; an :class:`OutputError` if that fails."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot create the folder {folder} ({err.strerror or err}); choose another output folder", param=param
        ) from None
    return folder


def check_distinct(output: PathLike, param: str, others: Mapping[str, PathLike | None]) -> None:
    """Refuse an output that is the same file as an input or another output.

    Parameters
    ----------
    output
        The output file.
    param
        Its concept name (``"output"``, ``"mask_output"``), carried by the error.
    others
        The inputs and other outputs of the same job by concept name; ``None`` values are skipped.
        Two paths are the same file when they resolve to the same path or (both existing)
        the same inode, so links and ``./`` spellings are caught too.
    """
    for concept, other in others.items():
        if other is not None and _same_file(Path(output).expanduser(), Path(other).expanduser()):
            what = PARAMS.get(concept, concept)
            raise OutputError(
                f"output {output} is the same file as {other}, given as {what}; writing it would destroy that file, "
                "so choose another output path",
                param=param,
            )


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


@contextmanager
def atomic_path(path: PathLike, param: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` only if the block succeeds.

    On any exception (cancellation included) the temporary file is removed and ``path`` is
    left as it was, so a half-written output never exists under the final name. Only errors
    about the output (its temporary file, the rename, a write without a file name) become
    :class:`OutputError`; an ``OSError`` that names another file is an input that could not be
    read (:class:`InputFileError`), and satgen's own errors pass through unchanged.
    """
    path = check_writable(path, param)
    clean_stale(path.parent)
    tmp = path.with_name(f".{path.name}.{_owner()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    except SatgenError:
        raise
    except OSError as err:
        if err.filename is not None and not _ours(err.filename, tmp, path):
            raise InputFileError(f"cannot read {err.filename} ({err.strerror or err}); check the file") from None
        raise OutputError(f"cannot write {path} ({write_failure(tmp, root_cause(err))})", param=param) from None
    finally:
        tmp.unlink(missing_ok=True)


def _ours(filename: object, tmp: Path, path: Path) -> bool:
    name = os.fsdecode(filename) if isinstance(filename, (str, bytes, os.PathLike)) else str(filename)
    return Path(name).name.startswith(tmp.name) or Path(name) == path


def write_failure(tmp: Path, reason: str) -> str:
    """Why writing ``tmp`` failed, in words: a full disk is named as such, else ``reason``."""
    try:
        free = shutil.disk_usage(tmp.parent).free
    except OSError:
        free = None
    if free is not None and free < 1 << 20:
        return f"the disk is full, {free // 1024} KiB free in {tmp.parent}; free some space or choose another folder"
    return f"{reason}; check the folder and free space"


def root_cause(err: BaseException) -> str:
    """The first line of the innermost error behind ``err`` (GDAL chains its errors: the last says most)."""
    seen = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    inner = seen[-1]
    return (getattr(inner, "strerror", None) or str(inner) or type(inner).__name__).splitlines()[0]


@contextmanager
def scratch_dir(folder: PathLike | None = None, prefix: str = "satgen-") -> Iterator[Path]:
    """A temporary folder in ``folder`` (default: the system's), removed afterwards, stale ones first."""
    parent = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    clean_stale(parent)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{_owner()}-", dir=parent) as tmp:
        yield Path(tmp)


def _owner() -> str:
    """``<pid>-<host>``: which process on which host makes a temporary file or folder."""
    return f"{os.getpid()}-{_HOST}"


def clean_stale(folder: PathLike) -> list[Path]:
    """Remove temporary files and folders that a dead process of this host left in ``folder``.

    Only names this module makes are considered (see the module docstring); an entry is
    removed when its process is gone and neither it nor (for a folder) its files changed for
    :data:`STALE_AFTER_S` seconds. Returns what was removed; problems are logged, not raised.
    """
    if os.name != "posix":
        return []
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = (_STALE_DIR if entry.name.startswith("satgen-") else _STALE_FILE).match(entry.name)
        if not match or match["host"] != _HOST or _alive(int(match["pid"])) or not _unchanged(Path(entry.path)):
            continue
        try:
            shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)
        except OSError as err:
            log.debug("cannot remove stale %s: %s", entry.path, err)
            continue
        log.info("removed %s, left by process %s that no longer runs", entry.path, match["pid"])
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _unchanged(path: Path) -> bool:
    """True when ``path`` (and a folder's direct entries) did not change for STALE_AFTER_S."""
    try:
        times = [path.lstat().st_mtime]
        if path.is_dir() and not path.is_symlink():
            times += [child.lstat().st_mtime for child in path.iterdir()]
    except OSError:
        return False
    return time.time() - max(times) > STALE_AFTER_S
