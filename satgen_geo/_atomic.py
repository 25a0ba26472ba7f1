"""Atomic outputs: write to a temporary name beside the target, rename on success."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from satgen_geo.errors import OutputError


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any heavy work, if ``path`` cannot be written."""
    path = Path(path).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give a file name such as {path / 'out.tif'}")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist; create it or choose another output path")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write {path}: permission denied; choose another output path")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` only if the block succeeds.

    On any exception (cancellation included) the temporary file is removed and ``path`` is
    left as it was, so a half-written output never exists under the final name.
    """
    path = check_writable(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(f"cannot write {path} ({err.strerror or err}); check the folder and free space") from None
    finally:
        tmp.unlink(missing_ok=True)
