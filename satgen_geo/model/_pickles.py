"""Name the Python objects a pickle refers to, without unpickling it.

Used only to explain why ``torch.load(weights_only=True)`` refused a file: the pickle
(``data.pkl`` of a ``torch.save`` zip, or the file itself) is disassembled with
:mod:`pickletools`, which executes nothing, and its ``GLOBAL``/``STACK_GLOBAL``
references are collected. Only the first few megabytes are read.
"""

from __future__ import annotations

import io
import pickletools
import re
import zipfile
from pathlib import Path

__all__ = ["pickled_globals"]

_SCAN_BYTES = 4 << 20
#: The legacy (non-zip) torch.save format is four pickles in a row before the tensor data.
_MAX_PICKLES = 4
#: What a torch.save of plain tensors and containers refers to.
_PLAIN = re.compile(
    r"collections\.OrderedDict|_codecs\.encode|builtins\.(set|frozenset|bytearray|slice|complex)"
    r"|torch\.\w+|torch\.(_utils|_tensor)\._rebuild_\w+"
)
_STRINGS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
)
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_NO_PUSH = frozenset({"FRAME", "PROTO", "STOP"})
_UNNAMED = "an unnamed object"


def pickled_globals(path: Path) -> list[str] | None:
    """The classes and functions beyond plain tensors that ``path``'s pickle refers to.

    Returns
    -------
    list[str] or None
        Sorted ``module.name`` strings (empty when the pickle refers to nothing beyond
        tensors and containers); ``None`` when the file holds no readable pickle.
    """
    data = _pickle_bytes(path)
    stream = io.BytesIO(data)
    found: list[str] = []
    pickles = 0
    while pickles < _MAX_PICKLES and stream.tell() < len(data):
        try:
            _scan(stream, found)
        except ValueError:  # pickletools' error for unknown opcodes and truncated data
            break
        pickles += 1
    if not pickles and not found:
        return None
    return sorted({name for name in found if not _PLAIN.fullmatch(name)})


def _pickle_bytes(path: Path) -> bytes:
    """The first bytes of the pickle: ``data.pkl`` inside a torch.save zip, else the file's start."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return b""
                with archive.open(member) as fh:
                    return fh.read(_SCAN_BYTES)
        with open(path, "rb") as fh:
            return fh.read(_SCAN_BYTES)
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile):
        return b""


def _scan(stream: io.BytesIO, found: list[str]) -> None:
    """Append the globals of the pickle at ``stream``'s position to ``found``; stop after its STOP."""
    memo: dict[int, str | None] = {}
    pushed: list[str | None] = []  # the last two values pushed, where they are strings
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name == "GLOBAL":
            found.append(str(arg).replace(" ", "."))
        elif name == "STACK_GLOBAL":
            module, attr = pushed[-2:] if len(pushed) == 2 else (None, None)
            found.append(f"{module}.{attr}" if module and attr else _UNNAMED)
        if name in _STRINGS:
            pushed.append(str(arg))
        elif name in _GETS:
            pushed.append(memo.get(int(arg)))  # type: ignore[arg-type]
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in _PUTS:
            memo[int(arg)] = pushed[-1] if pushed else None  # type: ignore[arg-type]
        elif name not in _NO_PUSH:
            pushed.append(None)
        del pushed[:-2]
