"""``satgen render``, ``satgen generate`` and ``satgen info`` through the real CLI (a subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from satgen_geo.engine import RenderConfig, render
from satgen_geo.model import ModelSpec, UNetGenerator, count_parameters, save_generator
from satgen_geo.model.checkpoint import file_sha256
from satgen_geo.model.loaded import load_model
from tests.conftest import SAMPLE_AOI, SAMPLE_PBF, run_cli

FEATURES = 8
ORIGIN = from_origin(500_000.0, 6_710_000.0, 1.0, 1.0)


def _write_raster(path: Path, data: np.ndarray) -> Path:
    count, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
        crs="EPSG:32635", transform=ORIGIN, tiled=True, blockxsize=256, blockysize=256,
    ) as ds:
        ds.write(data)
    return path


def _mask_data(height: int, width: int) -> np.ndarray:
    data = np.zeros((2, height, width), dtype=np.uint8)
    data[0, height // 3 : height // 3 + 10, :] = 255
    data[0, :, width // 5 : width // 5 + 8] = 255
    for r in range(20, height // 2, 60):
        for c in range(40, width // 2, 70):
            data[1, r : r + 18, c : c + 25] = 255
    return data


def _assert_clean_failure(result, out_dir: Path, fragment: str) -> None:  # noqa: ANN001
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.stderr
    assert fragment in error_lines[0], error_lines[0]
    assert list(out_dir.iterdir()) == []


@pytest.fixture(autouse=True)
def _one_thread_in_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    """One OpenMP thread in the CLI subprocess: fast on a busy 2-core machine, comparable pixels."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_render_inputs")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tiny = UNetGenerator(features=FEATURES)
        in3 = UNetGenerator(in_channels=3, features=FEATURES)
    save_generator(tiny, ModelSpec(features=FEATURES, name="tiny-cli"), d / "tiny.safetensors")
    torch.save(in3.state_dict(), d / "in3.pth")  # a bare state dict for 3-channel masks
    garbage = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (d / "garbage.pth").write_bytes(garbage)
    (d / "garbage.safetensors").write_bytes(garbage)
    _write_raster(d / "mask.tif", _mask_data(530, 700))
    _write_raster(d / "rgb.tif", np.full((3, 300, 300), 90, dtype=np.uint8))
    return {
        "tiny": d / "tiny.safetensors",
        "in3": d / "in3.pth",
        "garbage_pth": d / "garbage.pth",
        "garbage_st": d / "garbage.safetensors",
        "missing": d / "missing.safetensors",
        "mask": d / "mask.tif",
        "rgb": d / "rgb.tif",
    }


def test_render(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    result = run_cli(
        "render", files["mask"], "-o", out, "--checkpoint", files["tiny"], "--seed", "3",
        "--batch-size", "8", "--progress", "none",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"wrote {out}" in result.stdout and "700×530 px" in result.stdout
    with rasterio.open(files["mask"]) as src, rasterio.open(out) as ds:
        assert ds.crs == src.crs and ds.transform == src.transform
        assert (ds.width, ds.height, ds.count) == (700, 530, 3)
        assert ds.dtypes == ("uint8",) * 3 and ds.descriptions == ("red", "green", "blue")
        assert ds.tags()["SEED"] == "3" and ds.tags()["MODEL"] == "tiny-cli"
        cli_pixels = ds.read()
    assert cli_pixels.std() > 5
    # the CLI passes seed and batch size through: the library call with the same options gives the same pixels
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        render(files["mask"], tmp_path / "lib.tif", load_model(files["tiny"], "cpu"), RenderConfig(seed=3, batch_size=8))
    finally:
        torch.set_num_threads(threads)
    with rasterio.open(tmp_path / "lib.tif") as ds:
        np.testing.assert_array_equal(cli_pixels, ds.read())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.tif", "out.tif"]


def test_render_deterministic_cog(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    result = run_cli(
        "render", files["mask"], "-o", out, "--checkpoint", files["tiny"], "--deterministic",
        "--overlap", "64", "--cog", "--progress", "none",
    )
    assert result.returncode == 0, result.stderr
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.tags()["SEED"] == "none (deterministic)"
        cli_pixels = ds.read()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = RenderConfig(seed=99, deterministic=True, overlap_px=64)
        render(files["mask"], tmp_path / "lib.tif", load_model(files["tiny"], "cpu"), config)
    finally:
        torch.set_num_threads(threads)
    with rasterio.open(tmp_path / "lib.tif") as ds:
        np.testing.assert_array_equal(cli_pixels, ds.read())


def test_generate_with_json_progress(files: dict[str, Path], tmp_path: Path) -> None:
    mask, out = tmp_path / "m.tif", tmp_path / "out.tif"
    result = run_cli(
        "generate", "--osm", SAMPLE_PBF, "--aoi", SAMPLE_AOI, "--checkpoint", files["tiny"],
        "--mask-out", mask, "-o", out, "--progress", "json", "--batch-size", "8",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # every stdout line is JSON
    events = [e for e in lines if "warning" not in e]  # the core's warnings come as {"warning": text} lines
    assert all(set(e) == {"warning"} and isinstance(e["warning"], str) for e in lines if "warning" in e)
    assert events and all(set(e) == {"stage", "done", "total"} for e in events)
    stages = [e["stage"] for e in events]
    order = ["features", "rasterize", "render"]
    assert set(stages) == set(order)
    assert stages == sorted(stages, key=order.index)  # read OSM, then rasterize, then render
    assert events[0] == {"stage": "features", "done": 0, "total": 2}  # said before reading starts
    for stage in order:
        done = [e["done"] for e in events if e["stage"] == stage]
        totals = {e["total"] for e in events if e["stage"] == stage}
        assert len(totals) == 1 and done == sorted(done) and done[-1] == totals.pop()
    assert events[-1]["total"] == 64  # 1100 x 1115 px: 8 x 8 windows at overlap 128
    assert f"wrote {out}" in result.stderr  # the summary stays off stdout
    with rasterio.open(mask) as m, rasterio.open(out) as ds:
        assert m.count == 2 and ds.count == 3
        assert m.crs == ds.crs and m.crs.to_epsg() == 32635
        assert m.transform == ds.transform and (m.width, m.height) == (ds.width, ds.height)
        assert "OpenStreetMap contributors" in ds.tags()["ATTRIBUTION"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "out.tif"]


def test_info(files: dict[str, Path]) -> None:
    result = run_cli("info", files["tiny"])
    assert result.returncode == 0, result.stderr
    fields = dict((line.split(None, 1) + [""])[:2] for line in result.stdout.splitlines())
    assert fields["parameter_count"] == str(count_parameters(UNetGenerator(features=FEATURES))) == "851635"
    assert fields["name"] == "tiny-cli"
    assert fields["features"] == "8" and fields["format"] == "safetensors"
    assert json.loads(fields["channel_order"]) == ["roads", "buildings"]
    assert fields["sha256"] == file_sha256(files["tiny"])


@pytest.mark.parametrize(
    ("command", "mask", "checkpoint", "extra", "fragment"),
    [
        ("render", "mask", "in3", [], "3 input channels"),
        ("render", "mask", "garbage_pth", [], "corrupt"),
        ("render", "mask", "garbage_st", [], "corrupt"),
        ("render", "mask", "missing", [], "not found"),
        ("render", "rgb", "tiny", [], "2 uint8 bands"),
        ("render", "mask", "tiny", ["--device", "tpu"], "unknown device"),
        ("generate", None, "garbage_pth", [], "corrupt"),
        ("render", "mask", "tiny", ["--batch-size", "0"], "batch"),
    ],
    ids=["3-channel-checkpoint", "garbage-pth", "garbage-safetensors", "missing-checkpoint", "rgb-as-mask",
         "unknown-device", "generate-garbage-checkpoint", "batch-size-0"],
)
def test_bad_input(
    files: dict[str, Path], tmp_path: Path, command: str, mask: str | None, checkpoint: str, extra: list, fragment: str
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if command == "render":
        args = ["render", files[mask]]
    else:
        args = ["generate", "--osm", SAMPLE_PBF, "--aoi", SAMPLE_AOI, "--mask-out", out_dir / "m.tif"]
    result = run_cli(*args, "--checkpoint", files[checkpoint], *extra, "-o", out_dir / "out.tif", "--progress", "none")
    _assert_clean_failure(result, out_dir, fragment)
