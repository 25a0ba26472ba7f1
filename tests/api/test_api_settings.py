"""Server settings validate themselves; one table maps errors to HTTP statuses; the serve command's options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from satgen_geo.api import ApiSettings
from satgen_geo.api.errors import (
    STATUS_TABLE,
    QueueFullError,
    UnsupportedUploadError,
    status_for,
)
from satgen_geo.errors import (
    PARAMS,
    AOIError,
    AreaTooLargeError,
    CancelledError,
    CheckpointError,
    ConfigError,
    CRSError,
    LimitError,
    OSMDownloadError,
    SatgenError,
)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real ``satgen`` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "satgen_geo", *args], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parents[2], check=False)


@pytest.mark.parametrize(("changes", "param"), [
    ({"max_windows": 0}, "max_windows"),
    ({"max_upload_bytes": -1}, "max_upload_bytes"),
    ({"max_output_pixels": 1.5}, "max_pixels"),
    ({"workers": True}, "workers"),
    ({"queue_size": 1, "workers": 2}, "queue_size"),
    ({"gsd_m": 0.0}, "gsd_m"),
    ({"backend": "tensorrt"}, "backend"),
    ({"precision": "int4"}, "precision"),
])
def test_settings_validate_themselves(changes: dict, param: str) -> None:
    with pytest.raises(ConfigError) as err:
        ApiSettings(**changes)
    assert err.value.param == param and param in PARAMS
    assert "--" not in str(err.value)


def test_settings_defaults() -> None:
    settings = ApiSettings(cors_origins="http://example.org")
    assert settings.cors_origins == ("http://example.org",) and settings.max_windows == 4096


@pytest.mark.parametrize(("error", "status"), [
    (LimitError("x"), 413),
    (AreaTooLargeError("x"), 413),  # an AOIError too, but over a limit first
    (ConfigError("x"), 400),
    (SatgenError("x"), 400),
    (AOIError("x"), 422),
    (CRSError("x"), 422),
    (UnsupportedUploadError("x"), 415),
    (OSMDownloadError("x"), 503),
    (CancelledError("x"), 503),
    (QueueFullError(3), 503),
    (CheckpointError("x"), 500),
    (RuntimeError("x"), 500),
])
def test_one_status_table(error: BaseException, status: int) -> None:
    assert status_for(error) == status


def test_status_table_lists_subclasses_first() -> None:
    kinds = [kind for kind, _ in STATUS_TABLE]
    for i, kind in enumerate(kinds):
        assert not any(issubclass(later, kind) and later is not kind for later in kinds[i + 1:]), kind


def test_serve_command_options() -> None:
    help_text = run_cli("serve", "--help").stdout
    assert "--max-windows" in help_text and "--backend" in help_text and "--precision" in help_text
    zero = run_cli("serve", "--max-windows", "0")
    assert zero.returncode != 0 and "--max-windows" in zero.stderr
    crossed = run_cli("serve", "--queue-size", "1", "--workers", "2", "--port", "1")
    assert crossed.returncode == 1 and "queue size" in crossed.stderr
    assert "Traceback" not in crossed.stderr
