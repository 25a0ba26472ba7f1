"""SAM 3 mask completion with a tiny random SAM 3 saved like a downloaded one: folders, resume, GeoTIFFs, CLI."""

from __future__ import annotations

import json
import shutil
import string
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer
from rasterio.transform import from_origin
from rasterio.windows import Window

from satgen_geo.errors import PARAMS, CheckpointError, ConfigError, InputFileError, MissingDependencyError
from satgen_geo.mask import MaskSource
from satgen_geo.tiling import plan_windows, window_slices
from satgen_geo.train.datasets import PatchConfig, prepare_from_ortho, prepare_two_class, read_split
from satgen_geo.train.sam import SamConfig, SamSegmenter, complete_dataset
from satgen_geo.train.sam_ortho import complete_ortho
from tests.conftest import SAMPLE_PBF, run_cli, torch_threads

ROADS, BUILDINGS = 0, 1  # our channel order


def save_tiny_sam3(folder: Path) -> Path:
    """Save a randomly initialised SAM 3 (112 px input, 32-wide layers) and a CLIP tokenizer of single letters.

    ``folder`` then reads like a downloaded model (``config.json``, ``model.safetensors``,
    ``tokenizer.json``); the benchmark uses it too.
    """
    import torch
    from transformers import CLIPTokenizer, Sam3Config, Sam3Model

    width = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    config = Sam3Config(
        vision_config={
            "backbone_config": {"model_type": "sam3_vit_model", **width, "num_hidden_layers": 2, "image_size": 112,
                                "window_size": 4, "global_attn_indexes": [1], "pretrain_image_size": 56},
            "fpn_hidden_size": 32, "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
        },
        text_config={"model_type": "clip_text_model", "vocab_size": 54, **width, "num_hidden_layers": 1,
                     "projection_dim": 32, "max_position_embeddings": 32, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        geometry_encoder_config={**width, "num_layers": 1},
        detr_encoder_config={**width, "num_layers": 1},
        detr_decoder_config={**width, "num_layers": 1, "num_queries": 8},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )
    torch.manual_seed(0)
    Sam3Model(config).save_pretrained(folder)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        vocab |= {letter + suffix: len(vocab) + i for i, letter in enumerate(string.ascii_lowercase)}
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sam_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam3(tmp_path_factory.mktemp("sam3-tiny"))


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def _config(model: Path, missing: str = "buildings", **kw: object) -> SamConfig:
    settings: dict = {"threshold": 0.0, "min_area_px": 0, "device": "cpu", **kw}
    return SamConfig(missing=missing, model=model, **settings)


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _grey(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def test_completes_massachusetts_roads_with_buildings_and_resumes(sam_model: Path, shared: Path, tmp_path: Path) -> None:
    source = shared / "data/train/massachusetts"
    out = tmp_path / "completed"
    summary = complete_dataset(source / "images", source / "labels", out, _config(sam_model, batch_size=2))
    assert (summary.done, summary.skipped, summary.failed) == (2, 0, 0)
    for image in sorted((source / "images").glob("*.jpg")):
        mask = _rgb(out / "masks" / f"{image.stem}.png")
        assert mask.shape == (1500, 1500, 3)
        np.testing.assert_array_equal(mask[..., ROADS], _grey(source / "labels" / image.name))  # the label, untouched
        assert set(np.unique(mask[..., BUILDINGS])) <= {0, 255} and mask[..., BUILDINGS].any()
        assert not mask[..., 2].any()
        assert (out / "images" / image.name).read_bytes() == image.read_bytes()
    assert summary.mean_coverage is not None and 0 < summary.mean_coverage <= 1
    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}

    again = complete_dataset(source / "images", source / "labels", out, _config(sam_model))
    assert (again.done, again.skipped, again.failed, again.mean_coverage) == (0, 2, 0, None)
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()} == stamps

    prepared = tmp_path / "prepared"
    prepare_two_class(out, prepared, PatchConfig(stride_px=512))
    pair = next(p for p in read_split(prepared) if p.name == "10078660_15_x512_y512")
    label = _grey(source / "labels/10078660_15.jpg")[512:768, 512:768]
    np.testing.assert_array_equal(pair.mask[ROADS], np.where(label > 127, 255, 0))
    sam = _rgb(out / "masks/10078660_15.png")[512:768, 512:768, BUILDINGS]
    np.testing.assert_array_equal(pair.mask[BUILDINGS], sam)


def test_inria_buildings_gain_roads_and_threshold_and_area_filter(sam_model: Path, shared: Path, tmp_path: Path) -> None:
    source = shared / "data/train/inria-austin"
    images = sorted((source / "images").glob("*.png"))
    kept = complete_dataset(source / "images", source / "labels", tmp_path / "all", _config(sam_model, "roads"))
    assert kept.done == len(images) and kept.mean_coverage and kept.mean_coverage > 0
    for settings in ({"threshold": 1.0}, {"min_area_px": 256 * 256 + 1}):
        summary = complete_dataset(source / "images", source / "labels", tmp_path / str(settings),
                                   _config(sam_model, "roads", **settings))
        assert summary.done == len(images) and summary.mean_coverage == 0.0
    for image in images:
        mask = _rgb(tmp_path / "all/masks" / image.name)
        np.testing.assert_array_equal(mask[..., BUILDINGS], _grey(source / "labels" / image.name))
        assert mask[..., ROADS].any() and set(np.unique(mask[..., ROADS])) <= {0, 255}


def test_bad_files_are_counted_and_a_damaged_output_is_redone(sam_model: Path, shared: Path, tmp_path: Path) -> None:
    source = shared / "data/train/inria-austin"
    images, labels = tmp_path / "images", tmp_path / "labels"
    shutil.copytree(source / "images", images)
    shutil.copytree(source / "labels", labels)
    (images / "broken.png").write_bytes(b"not a png at all")
    shutil.copy(labels / "austin1_patch_021_x2688_y0.png", labels / "broken.png")
    shutil.copy(images / "austin1_patch_021_x2688_y0.png", images / "unlabelled.png")
    out = tmp_path / "out"
    summary = complete_dataset(images, labels, out, _config(sam_model, batch_size=3))
    assert (summary.done, summary.skipped, summary.failed) == (4, 0, 2)
    assert not (out / "masks/broken.png").exists() and not (out / "masks/unlabelled.png").exists()

    damaged = out / "masks/austin1_patch_033_x4224_y0.png"
    damaged.write_bytes(damaged.read_bytes()[:200])
    again = complete_dataset(images, labels, out, _config(sam_model))
    assert (again.done, again.skipped, again.failed) == (1, 3, 2)
    assert _rgb(damaged).shape == (256, 256, 3)


def test_missing_extra_and_missing_weights_say_what_to_do(
    sam_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for model, reason in ((tmp_path / "absent", "not a folder"), ("someone/sam3-never-downloaded", "Hugging Face cache"),
                          (tmp_path, "model.safetensors")):
        with pytest.raises(CheckpointError, match=reason) as caught:
            SamSegmenter(_config(model))
        assert caught.value.param == "sam_model" and "nothing is downloaded" in str(caught.value)
        assert "hf download" in str(caught.value) and "\n" not in str(caught.value)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'satgen-geo\[sam\]'"):
        SamSegmenter(_config(sam_model))


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("missing", "trees", "missing"), ("model", "", "sam_model"), ("prompt", 3, "prompt"),
        ("threshold", 1.5, "threshold"), ("threshold", float("nan"), "threshold"), ("min_area_px", -1, "min_area_px"),
        ("batch_size", 0, "batch_size"), ("batch_size", 33, "batch_size"), ("window_px", 32, "tile_px"),
        ("overlap_px", 600, "overlap_px"),
    ],
)
def test_config_is_checked(field: str, value: object, param: str) -> None:
    settings: dict = {"missing": "buildings", "model": "m", field: value}
    with pytest.raises(ConfigError) as caught:
        SamConfig(**settings)
    assert caught.value.param == param and param in PARAMS and "--" not in str(caught.value)


def test_config_defaults_the_prompt_to_the_class() -> None:
    assert SamConfig("buildings", "m").prompt == "building" and SamConfig("roads", "m").prompt == "road"
    assert SamConfig("roads", "m", prompt=" dirt track ").prompt == "dirt track"


def _write_ortho(path: Path, pixels: np.ndarray, crs: object, transform: object) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3, dtype="uint8",
                       crs=crs, transform=transform) as dst:
        dst.write(pixels)
    return path


def _massachusetts(shared: Path, size: int) -> np.ndarray:
    return np.moveaxis(_rgb(shared / "data/train/massachusetts/images/10078660_15.jpg")[:size, 300 : 300 + size], -1, 0)


def test_georeferenced_run_keeps_the_grid_and_max_merges_windows(sam_model: Path, shared: Path, tmp_path: Path) -> None:
    size = 600
    with rasterio.open(shared / "data/georef/inria-austin1-buildings.tif") as inria:
        window = Window(1200, 1200, size, size)
        crs, transform, buildings = inria.crs, inria.window_transform(window), inria.read(1, window=window)
    with rasterio.open(tmp_path / "label.tif", "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                       crs=crs, transform=transform) as dst:
        dst.write(buildings, 1)
    ortho = _write_ortho(tmp_path / "ortho.tif", _massachusetts(shared, size), crs, transform)
    config = _config(sam_model, "roads", window_px=256, overlap_px=32, batch_size=2)
    result = complete_ortho(ortho, tmp_path / "mask.tif", config, label=tmp_path / "label.tif")
    with rasterio.open(result.path) as mask:
        assert (mask.crs, mask.transform, mask.count, mask.dtypes) == (crs, transform, 2, ("uint8", "uint8"))
        assert mask.descriptions == ("roads", "buildings") and mask.tags()["BANDS"].startswith("1=roads")
        roads, built = mask.read(1), mask.read(2)
    np.testing.assert_array_equal(built, np.where(buildings > 127, 255, 0))
    # the same windows run one by one and OR-ed into a whole array: what the rolling band must give
    plan, segment = plan_windows(size, size, 256, 32), SamSegmenter(config)
    expected = np.zeros((size, size), dtype=bool)
    with rasterio.open(ortho) as src:
        for tile in plan:
            rows, cols = window_slices(tile, plan)[0]
            expected[rows, cols] |= segment([src.read(window=Window.from_slices(rows, cols))])[0]
    assert result.windows == len(plan) == 9 and expected.any()
    np.testing.assert_array_equal(roads, np.where(expected, 255, 0))
    assert result.coverage == pytest.approx(expected.mean())

    with rasterio.open(tmp_path / "shifted.tif", "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                       crs=crs, transform=transform * transform.translation(1, 0)) as dst:
        dst.write(buildings, 1)
    with pytest.raises(InputFileError, match="not on the image's grid") as caught:
        complete_ortho(ortho, tmp_path / "bad.tif", config, label=tmp_path / "shifted.tif")
    assert caught.value.param == "label_raster" and not (tmp_path / "bad.tif").exists()


def test_from_ortho_takes_buildings_from_sam_and_roads_from_osm(sam_model: Path, shared: Path, tmp_path: Path) -> None:
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True).transform(26.945, 60.535)
    ortho = _write_ortho(tmp_path / "kotka.tif", _massachusetts(shared, 512), "EPSG:32635", from_origin(x, y, 1.0, 1.0))
    config = _config(sam_model, "buildings", window_px=256, overlap_px=32)
    osm_only, with_sam = tmp_path / "osm", tmp_path / "sam"
    prepare_from_ortho(ortho, osm_only, MaskSource(osm=SAMPLE_PBF), PatchConfig())
    summary = prepare_from_ortho(ortho, with_sam, MaskSource(osm=SAMPLE_PBF), PatchConfig(), sam=config)
    assert summary.written["train"] == 4 and any("buildings from SAM 3" in note for note in summary.notes)
    sam_mask = complete_ortho(ortho, tmp_path / "sam.tif", config).path
    with rasterio.open(sam_mask) as added:
        sam_buildings = added.read(2)
    for osm_pair, sam_pair in zip(read_split(osm_only), read_split(with_sam), strict=True):
        col, row = (int(part[1:]) for part in sam_pair.name.split("_")[-2:])
        np.testing.assert_array_equal(sam_pair.mask[ROADS], osm_pair.mask[ROADS])
        np.testing.assert_array_equal(sam_pair.mask[BUILDINGS], sam_buildings[row : row + 256, col : col + 256])
    assert any(pair.mask[ROADS].any() for pair in read_split(with_sam))
    manifest = json.loads((with_sam / "manifest.json").read_text())
    assert manifest["parts"][0]["layout"] == "ortho+osm+sam"


def test_cli_completes_then_prepares_and_names_the_option_on_errors(sam_model: Path, shared: Path, tmp_path: Path) -> None:
    source = shared / "data/train/inria-austin"
    out, prepared = tmp_path / "out", tmp_path / "prepared"
    args = ("dataset", "complete", source / "images", source / "labels", "--missing", "roads", "--device", "cpu")
    done = run_cli(*args, "--sam-model", sam_model, "--threshold", "0", "-o", out, "--progress", "json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1] == {"stage": "sam", "done": 4, "total": 4}
    assert "4 completed, 0 already complete, 0 failed" in done.stderr
    cut = run_cli("dataset", "prepare", out, "--layout", "both", "-o", prepared)
    assert cut.returncode == 0 and "4 train and 0 val pairs written" in cut.stdout, cut.stderr
    assert all(pair.mask[ROADS].any() and pair.mask[BUILDINGS].any() for pair in read_split(prepared))

    missing = run_cli(*args, "--sam-model", tmp_path / "nowhere", "-o", tmp_path / "never")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].endswith("(--sam-model PATH_OR_ID)")
    assert "nothing is downloaded" in missing.stderr and not (tmp_path / "never").exists()
