"""Process-wide settings that only a front end (CLI, server, worker) may apply, never the core.

The core library never changes its host process: a script that imports satgen-geo keeps
its allocator as it was. The ``satgen`` command, ``satgen serve`` and worker processes call
:func:`tune_allocator` once at start-up.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os

log = logging.getLogger(__name__)

#: Set to ``0`` to keep glibc's default allocator settings in the CLI and the server.
ENV_TUNE_ALLOCATOR = "SATGEN_TUNE_ALLOCATOR"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


@functools.cache
def tune_allocator() -> bool:
    """Keep the network's large activation buffers mapped between calls; return whether it was done.

    With glibc's defaults each forward pass maps its large activations fresh and returns
    them afterwards (about 117k page faults per batch of 8 at 64 features), which costs a
    quarter of the network's speed on CPU. Raising the mmap and trim thresholds keeps that
    memory in the heap for reuse; the process's resident size then stays at its peak.
    Skipped when ``SATGEN_TUNE_ALLOCATOR=0`` and where glibc's ``mallopt`` is not available.
    """
    if os.environ.get(ENV_TUNE_ALLOCATOR, "1").strip() == "0":
        log.debug("%s=0: keeping the default allocator settings", ENV_TUNE_ALLOCATOR)
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):
        log.debug("mallopt is not available; keeping the default allocator settings")
        return False
    return True
