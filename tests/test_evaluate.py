"""Evaluation: pixel metrics, seam score, Fréchet feature distance, end-to-end report."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from satgen_geo import evaluate as ev
from satgen_geo.errors import SatgenError
from satgen_geo.model import ModelSpec, UNetGenerator, save_generator
from satgen_geo.model.loaded import LoadedModel, load_model
from satgen_geo.tiling import plan_windows
from satgen_geo.train.datasets import Pair, PatchConfig, prepare_single_class, read_split, write_pair

SHARED = Path(__file__).resolve().parents[2] / "shared"
INRIA = SHARED / "data" / "train" / "inria-austin"


def _random_image(shape=(3, 64, 64), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --------------------------------------------------------------------------- pixel metrics


def test_identical_images() -> None:
    a = _random_image()
    assert ev.l1(a, a) == 0.0
    assert ev.psnr(a, a) == math.inf
    assert ev.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_constant_offset_l1_and_psnr() -> None:
    a = np.random.default_rng(1).integers(0, 246, (3, 32, 40), dtype=np.uint8)
    b = a + np.uint8(10)
    assert ev.l1(a, b) == pytest.approx(10 / 255)
    assert ev.psnr(a, b) == pytest.approx(20 * math.log10(255 / 10))
    assert ev.l1(a, b) == ev.l1(b, a) and ev.psnr(a, b) == ev.psnr(b, a)


def test_ssim_of_constant_images_matches_hand_value() -> None:
    # Flat images: zero variances, so SSIM is the luminance term alone.
    a = np.full((3, 32, 32), 100, np.uint8)
    b = np.full((3, 32, 32), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)  # 0.99547...
    assert ev.ssim(a, b) == pytest.approx(expected, rel=1e-12)


def test_ssim_matches_direct_window_sums() -> None:
    """Independent reference: weighted statistics of every 11x11 window, computed directly."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (3, 16, 19), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(3):
        for i in range(16 - 10):
            for j in range(19 - 10):
                p = a[ch, i : i + 11, j : j + 11].astype(float)
                q = b[ch, i : i + 11, j : j + 11].astype(float)
                mp, mq = (w * p).sum(), (w * q).sum()
                vp, vq = (w * (p - mp) ** 2).sum(), (w * (q - mq) ** 2).sum()
                cov = (w * (p - mp) * (q - mq)).sum()
                values.append((2 * mp * mq + c1) * (2 * cov + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
    assert ev.ssim(a, b) == pytest.approx(np.mean(values), rel=1e-10)


def test_ssim_symmetric_and_decreasing_with_noise() -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64]
    a = np.clip(np.stack([80 + xx, 60 + yy, 120 + 0 * xx]) + rng.normal(0, 8, (3, 64, 64)), 0, 255).astype(np.uint8)
    noise = rng.normal(0, 1, a.shape)
    scores = [ev.ssim(a, np.clip(a + s * noise, 0, 255).astype(np.uint8)) for s in (0, 2, 5, 10, 20, 40, 80)]
    assert scores[0] == pytest.approx(1.0)
    assert all(later < earlier for earlier, later in zip(scores, scores[1:], strict=False))
    b = np.clip(a + 20 * noise, 0, 255).astype(np.uint8)
    assert ev.ssim(a, b) == pytest.approx(ev.ssim(b, a), rel=1e-12)


def test_metrics_reject_bad_shapes() -> None:
    with pytest.raises(ev.EvaluationError, match="same shape"):
        ev.l1(_random_image((3, 8, 8)), _random_image((3, 8, 9)))
    with pytest.raises(SatgenError, match="at least 11x11"):
        ev.ssim(_random_image((3, 8, 8)), _random_image((3, 8, 8)))


# --------------------------------------------------------------------------- seams


def _smooth_textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([60 + 0.1 * xx + 0.05 * yy, 90 + 0.08 * yy, 120 - 0.05 * xx]).astype(float)
    return base + rng.normal(0, 6, (3, height, width))


def test_seam_score_is_about_one_without_seams() -> None:
    image = np.clip(_smooth_textured(640, 768), 0, 255).astype(np.uint8)
    assert ev.seam_score(image, 256, 128) == pytest.approx(1.0, abs=0.03)


def test_seam_score_detects_steps_on_window_boundaries() -> None:
    height, width = 640, 768
    image = _smooth_textured(height, width)
    plan = plan_windows(height, width, 256, 128)
    for k, offset in enumerate(plan.col_offsets):  # a step at every window start (= previous window end)
        image[:, :, offset:] += 10 * (-1) ** k
    for k, offset in enumerate(plan.row_offsets):
        image[:, offset:, :] += 10 * (-1) ** k
    seamy = np.clip(image, 0, 255).astype(np.uint8)
    assert ev.seam_score(seamy, 256, 128) > 1.3
    # The same steps are not on the boundaries of another lattice: no seams there.
    assert ev.seam_score(seamy, 256, 100) < 1.1


def test_seam_score_geotiff_equals_in_memory(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    height, width = 600, 700
    image = _smooth_textured(height, width, seed=5)
    image[:, :, 256:] += 12
    image[:, 384:, :] -= 9
    image = np.clip(image, 0, 255).astype(np.uint8)
    path = tmp_path / "rgb.tif"
    profile = {
        "driver": "GTiff", "height": height, "width": width, "count": 3, "dtype": "uint8", "crs": "EPSG:3857",
        "transform": rasterio.transform.from_origin(0, height, 1, 1),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
    expected = ev.seam_score(image, 256, 128)
    assert expected > 1.05
    for strip_rows in (None, 1, 97, 128, 1000):
        assert ev.seam_score_geotiff(path, 256, 128, strip_rows=strip_rows) == expected


def test_seam_score_without_interior_boundaries_is_nan() -> None:
    assert math.isnan(ev.seam_score(_random_image((3, 200, 256)), 256, 128))


# --------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_properties() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(12, 1280))
    b = rng.normal(size=(9, 1280)) * 1.3
    assert ev.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8 * np.trace(np.cov(a, rowvar=False)))
    ab, ba = ev.frechet_distance(a, b), ev.frechet_distance(b, a)
    assert math.isfinite(ab) and ab > 0
    assert ab == pytest.approx(ba, rel=1e-10)
    shifts = [ev.frechet_distance(a, a + s) for s in (0.1, 0.5, 1.0)]
    assert shifts == pytest.approx([1280 * s**2 for s in (0.1, 0.5, 1.0)], rel=1e-9)  # same covariance
    assert shifts[0] < shifts[1] < shifts[2]


def test_frechet_distance_branches_agree_and_match_closed_form() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(30, 6)), rng.normal(size=(40, 6)) * 2 + 1  # n > d: eigen route
    a_cov, b_cov = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(a_cov)
    root = (v * np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root @ b_cov @ root)
    reference = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(a_cov + b_cov) - 2 * np.sqrt(inner).sum()
    assert ev.frechet_distance(a, b) == pytest.approx(reference, rel=1e-9)
    small_a, small_b = a[:5], b[:4]  # n <= d: SVD route, singular covariances
    a_cov, b_cov = np.cov(small_a, rowvar=False), np.cov(small_b, rowvar=False)
    w, v = np.linalg.eigh(a_cov)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.clip(np.linalg.eigvalsh(root @ b_cov @ root), 0, None)
    reference = ((small_a.mean(0) - small_b.mean(0)) ** 2).sum() + np.trace(a_cov + b_cov) - 2 * np.sqrt(inner).sum()
    assert ev.frechet_distance(small_a, small_b) == pytest.approx(reference, rel=1e-6)


def test_frechet_distance_rejects_bad_input() -> None:
    with pytest.raises(ev.EvaluationError, match="at least 2 samples"):
        ev.frechet_distance(np.zeros((1, 4)), np.zeros((3, 4)))
    with pytest.raises(ev.EvaluationError, match="same d"):
        ev.frechet_distance(np.zeros((3, 4)), np.zeros((3, 5)))


# --------------------------------------------------------------------------- feature extractor


@pytest.fixture(scope="module")
def extractor() -> ev.FeatureExtractor:
    return ev.FeatureExtractor("cpu")


def test_feature_extractor_on_real_images(extractor: ev.FeatureExtractor) -> None:
    paths = sorted((INRIA / "images").glob("*.png"))[:3]
    assert paths, f"no test images in {INRIA}"
    images = [np.moveaxis(np.asarray(Image.open(p).convert("RGB")), -1, 0) for p in paths]
    feats = extractor(images)
    assert feats.shape == (3, 1280) and feats.dtype == np.float64
    assert np.isfinite(feats).all() and feats.std() > 0
    np.testing.assert_allclose(extractor(images[:1]), feats[:1], rtol=1e-4, atol=1e-5)  # batch-size rounding
    # Real aerial images are closer to each other than to flat grey images.
    grey = [np.full_like(images[0], 128), np.full_like(images[0], 60), np.full_like(images[0], 200)]
    assert ev.frechet_distance(feats, extractor(grey)) > ev.frechet_distance(feats[:2], feats[1:])


def test_feature_extractor_missing_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ev.MissingDependencyError, match=r"pip install 'satgen-geo\[eval\]'"):
        ev.FeatureExtractor()


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    prepare_single_class(INRIA, root, "buildings", PatchConfig())
    train = read_split(root, "train")
    assert len(train) >= 3
    for pair in train[:3]:  # a manual held-out split
        write_pair(root, "val", Pair(f"val_{pair.name}", pair.mask, pair.image))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_generator(UNetGenerator(features=8), ModelSpec(features=8, name="t"), path)
    return path


def _metric_values(report: dict) -> dict:
    keep = ("metrics", "baselines", "per_image", "n_images", "mode", "seed")
    return {k: report[k] for k in keep}


def test_run_evaluation_end_to_end(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    model = load_model(checkpoint, "cpu")
    report = ev.run_evaluation(model, dataset, "val", out_dir=tmp_path / "a")
    written = json.loads((tmp_path / "a" / "report.json").read_text())
    assert "generated" not in report and "generated" not in written
    assert written["n_images"] == 3 and written["split"] == "val" and written["mode"] == "deterministic"
    for block in (written["metrics"], *written["baselines"].values()):
        for key in ("l1", "psnr", "ssim", ev.FEATURE_DISTANCE_KEY):
            assert isinstance(block[key], float) and math.isfinite(block[key]), (key, block)
    assert 0 < written["metrics"]["l1"] < 1 and -1 <= written["metrics"]["ssim"] <= 1
    assert ev.FEATURE_DISTANCE_NOTE in written["notes"][ev.FEATURE_DISTANCE_KEY]
    assert [m["name"] for m in written["per_image"]] == [p.name for p in read_split(dataset, "val")]
    colour = written["baselines"]["mean_colour"]
    assert "'train'" in colour["source"] and len(colour["rgb"]) == 3
    train_mean = np.mean([p.image.reshape(3, -1).mean(1) for p in read_split(dataset, "train")], axis=0)
    np.testing.assert_allclose(colour["rgb"], train_mean, atol=1e-3)  # equal-size patches: mean of means
    assert written["baselines"]["random_init_generator"]["features"] == 8

    with Image.open(tmp_path / "a" / "contact_sheet.png") as sheet:
        gap = ev.CONTACT_GAP_PX
        assert sheet.size == (3 * 256 + 2 * gap, 3 * 256 + 2 * gap)
        assert sheet.mode == "RGB"

    again = ev.run_evaluation(model, dataset, "val", out_dir=tmp_path / "b")
    assert _metric_values(again) == _metric_values(report)
    assert (tmp_path / "b" / "report.json").read_text().replace("/b/", "/a/") == (
        tmp_path / "a" / "report.json"
    ).read_text()


def _cheap_features(images) -> np.ndarray:
    """Stand-in extractor for tests that are not about features: per-channel mean and std."""
    return np.array([[*im.reshape(3, -1).mean(1), *im.reshape(3, -1).std(1)] for im in images], dtype=np.float64)


def test_stochastic_evaluation_is_seeded(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    model = load_model(checkpoint, "cpu")
    pairs = read_split(dataset, "val")
    runs = {
        name: ev.evaluate_model(model, pairs, deterministic=det, seed=seed, feature_extractor=_cheap_features)
        for name, det, seed in (("first", False, 3), ("second", False, 3), ("other", False, 4), ("plain", True, 3))
    }
    first, second = runs["first"], runs["second"]
    assert first["mode"] == "stochastic" and first["feature_extractor"]["name"] == "function"
    assert _metric_values(first) == _metric_values(second)
    for a, b in zip(first["generated"], second["generated"], strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ("other", "plain"):
        pairs_of_images = zip(first["generated"], runs[name]["generated"], strict=True)
        assert any(not np.array_equal(a, b) for a, b in pairs_of_images), name
    assert "evaluated real images" in first["baselines"]["mean_colour"]["source"]
    assert not model.generator.mc_dropout and not model.generator.training  # the model's mode is restored
    # The CLI entry point reproduces the same seeded draws (a third run).
    report = ev.run_evaluation(
        model, dataset, out_dir=tmp_path, deterministic=False, seed=3, feature_extractor=_cheap_features
    )
    assert report["per_image"] == first["per_image"] and report["metrics"] == first["metrics"]
    assert report["baselines"]["random_init_generator"] == first["baselines"]["random_init_generator"]


def test_channel_order_is_honoured(dataset: Path) -> None:
    torch.manual_seed(2)
    generator = UNetGenerator(features=8)
    pairs = read_split(dataset, "val")[:2]
    swapped = [Pair(p.name, p.mask[::-1].copy(), p.image) for p in pairs]
    ours = LoadedModel(generator, ModelSpec(features=8), torch.device("cpu"), "test", "0" * 64)
    theirs = LoadedModel(
        generator, ModelSpec(features=8, channel_order=("buildings", "roads")), torch.device("cpu"), "test", "0" * 64
    )
    a = ev.evaluate_model(ours, swapped, mean_colour=(100, 100, 100), feature_extractor=_cheap_features)
    b = ev.evaluate_model(theirs, pairs, mean_colour=(100, 100, 100), feature_extractor=_cheap_features)
    for x, y in zip(a["generated"], b["generated"], strict=True):
        np.testing.assert_array_equal(x, y)
    assert b["baselines"]["mean_colour"]["rgb"] == [100.0, 100.0, 100.0]
    assert b["baselines"]["mean_colour"]["source"] == "given by the caller"


def test_empty_split_is_a_clear_error(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    model = load_model(checkpoint, "cpu")
    with pytest.raises(SatgenError, match=r"no pairs in .*nosuch.*--holdout-right"):
        ev.run_evaluation(model, dataset, "nosuch", out_dir=tmp_path)


def test_contact_sheet_rows_and_colours(tmp_path: Path) -> None:
    mask = np.zeros((2, 256, 256), np.uint8)
    mask[0, :10] = 255  # roads: red
    mask[1, -10:] = 255  # buildings: green
    pairs = [Pair(f"p{i}", mask, np.full((3, 256, 256), 50 * i, np.uint8)) for i in range(3)]
    generated = [np.full((3, 256, 256), 7, np.uint8)] * 3
    path = ev.contact_sheet(pairs, generated, tmp_path / "sheet.png", max_rows=2)
    with Image.open(path) as sheet:
        gap = ev.CONTACT_GAP_PX
        assert sheet.size == (3 * 256 + 2 * gap, 2 * 256 + gap)
        pixels = np.asarray(sheet)
    assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[255, 0]) == (0, 255, 0)
    assert tuple(pixels[0, 256 + gap]) == (7, 7, 7)
    assert tuple(pixels[256 + gap, 2 * (256 + gap)]) == (50, 50, 50)
    assert not list(tmp_path.glob(".*partial"))


def test_write_report_handles_inf_and_nan(tmp_path: Path) -> None:
    path = ev.write_report(
        {"a": math.inf, "b": np.float32(0.123456789), "c": math.nan, "d": [np.int64(3)], "generated": [1]},
        tmp_path / "r.json",
    )
    assert json.loads(path.read_text()) == {"a": "inf", "b": 0.123457, "c": None, "d": [3]}
