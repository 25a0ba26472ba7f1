"""Safe outputs: same-file refusal, error classification in atomic_path, stale temporary files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from satgen_geo import _atomic
from satgen_geo._atomic import STALE_AFTER_S, atomic_path, check_distinct, clean_stale, scratch_dir
from satgen_geo.errors import CancelledError, InputFileError, OutputError
from tests.conftest import ROOT, SAMPLE_AOI, SAMPLE_PBF

OLD = time.time() - STALE_AFTER_S - 60


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _aged(path: Path) -> Path:
    os.utime(path, (OLD, OLD))
    return path


# ----------------------------------------------------------------------------- same file


def test_same_file_is_refused_by_path_link_and_spelling(tmp_path: Path) -> None:
    mask = tmp_path / "m.tif"
    mask.write_bytes(b"mask")
    (tmp_path / "hard.tif").hardlink_to(mask)
    (tmp_path / "soft.tif").symlink_to(mask)
    for output in (mask, tmp_path / "hard.tif", tmp_path / "soft.tif", tmp_path / "sub" / ".." / "m.tif"):
        with pytest.raises(OutputError, match="same file") as info:
            check_distinct(output, "output", {"mask": mask})
        assert info.value.param == "output" and "the input mask GeoTIFF" in str(info.value)
    planned = tmp_path / "new.tif"  # neither exists yet: compared by resolved path
    with pytest.raises(OutputError, match="same file"):
        check_distinct(planned, "mask_output", {"output": tmp_path / "." / "new.tif"})
    check_distinct(tmp_path / "other.tif", "output", {"mask": mask, "aoi_file": None})
    assert mask.read_bytes() == b"mask"


# ----------------------------------------------------------------------------- atomic_path errors


def test_atomic_path_names_an_unreadable_input_not_the_output(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with pytest.raises(InputFileError, match="elsewhere.txt") as info:
        with atomic_path(out):
            (tmp_path / "elsewhere.txt").read_text()  # an input that is not there
    assert "cannot write" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_turns_write_errors_into_output_errors(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with pytest.raises(OutputError, match="cannot write") as info:
        with atomic_path(out, "mask_output") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(28, "No space left on device")  # a failed write carries no file name
    assert info.value.param == "mask_output" and "No space left on device" in str(info.value)
    with pytest.raises(CancelledError):  # satgen's own errors pass unchanged
        with atomic_path(out):
            raise CancelledError("stop")
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_carry_pid_and_host(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "out.tif") as tmp:
        assert _atomic._STALE_FILE.match(tmp.name)["pid"] == str(os.getpid())
        tmp.write_bytes(b"x")
    with scratch_dir(tmp_path) as folder:
        assert _atomic._STALE_DIR.match(folder.name)["host"] == _atomic._HOST
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


# ----------------------------------------------------------------------------- stale files


def test_stale_files_of_dead_processes_are_removed_and_nothing_else(tmp_path: Path) -> None:
    dead, host = _dead_pid(), _atomic._HOST
    stale = [tmp_path / f".m.tif.{dead}-{host}-0123abcd.partial", tmp_path / f".m.tif.{dead}-{host}-0123abcd.partial.work.tif"]
    fresh = tmp_path / f".m.tif.{dead}-{host}-89abcdef.partial"  # dead, but written a moment ago
    old_keep = [
        tmp_path / f".m.tif.{os.getpid()}-{host}-01234567.partial",  # a live process
        tmp_path / f".m.tif.{dead}-0badc0de-01234567.partial",  # another host's
        tmp_path / ".m.tif.1a2b3c4d.partial",  # an old name without a pid: unknown owner
        tmp_path / f"notes-{dead}-{host}-x.txt",  # not ours
    ]
    for path in (*stale, fresh, *old_keep):
        path.write_bytes(b"x")
    stale_dir = tmp_path / f"satgen-{dead}-{host}-k2x9_q1a"
    stale_dir.mkdir()
    (stale_dir / "mask.tif").write_bytes(b"x")
    busy_dir = tmp_path / f"satgen-{dead}-{host}-busy_1a"  # its file changed a moment ago
    busy_dir.mkdir()
    (busy_dir / "mask.tif").write_bytes(b"x")
    for path in (*stale, *old_keep, stale_dir / "mask.tif", stale_dir, busy_dir):
        _aged(path)
    removed = clean_stale(tmp_path)
    assert sorted(removed) == sorted([*stale, stale_dir])
    assert sorted(tmp_path.iterdir()) == sorted([fresh, *old_keep, busy_dir])


def test_sigkill_leftovers_are_cleaned_by_the_next_run(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """A generate killed outright leaves its partial image and mask folder; the next run into the folder removes them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "satgen_geo", "generate", "--osm", SAMPLE_PBF, "--aoi", SAMPLE_AOI, "--checkpoint",
         tiny_checkpoint, "--progress", "json", "-o", tmp_path / "img.tif"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    for line in proc.stdout:
        if json.loads(line).get("stage") == "render":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.endswith(".partial") for name in left) and any(name.startswith("satgen-") for name in left), left
    for path in tmp_path.iterdir():  # as if the next run came more than STALE_AFTER_S later
        for inner in path.iterdir() if path.is_dir() else ():
            _aged(inner)
        _aged(path)
    with atomic_path(tmp_path / "next.txt") as tmp:
        tmp.write_text("next run")
    assert [p.name for p in tmp_path.iterdir()] == ["next.txt"]
