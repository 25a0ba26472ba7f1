"""Evaluate a generator on held-out pairs: the model, its two baselines, the report.

:func:`generate_images` runs a model over masks exactly as the render engine does; the
trainer's validation uses it too, so ``log.csv``'s ``val_l1`` is the ``l1`` this module
reports for the same model and pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satgen_geo._atomic import ensure_dir
from satgen_geo._validate import check_int
from satgen_geo.blend import to_uint8
from satgen_geo.engine import RenderConfig
from satgen_geo.errors import EvaluationError
from satgen_geo.evaluate.baselines import (
    MeanColour,
    mean_colour_images,
    random_init_model,
    split_mean_colour,
)
from satgen_geo.evaluate.features import (
    FEATURE_DISTANCE_KEY,
    FEATURE_DISTANCE_NOTE,
    Extractor,
    extractor_info,
    shared_extractor,
)
from satgen_geo.evaluate.frechet import frechet_distance
from satgen_geo.evaluate.metrics import image_metrics, mean_l1
from satgen_geo.evaluate.report import contact_sheet, write_report
from satgen_geo.model.loaded import LoadedModel
from satgen_geo.network import WindowNetwork
from satgen_geo.tiling import window_seed
from satgen_geo.train.datasets import Pair, read_split

log = logging.getLogger(__name__)

__all__ = ["EVAL_BATCH_SIZE", "EvaluationResult", "evaluate_model", "generate_images", "run_evaluation"]

#: Masks per generator call unless told otherwise (the trainer's validation uses it too: on
#: some devices the batch size changes the last bits of the output).
EVAL_BATCH_SIZE = 8

_METRIC_NOTES = {
    "l1": "mean absolute error in [0, 1] units (|a - b| / 255), mean over images",
    "psnr": "dB, data range 255, mean over images of per-image PSNR (inf if any image is reproduced exactly)",
    "ssim": "Wang et al. 2004, 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, mean over channels and images",
}
_STOCHASTIC_NOTE = "per-image seeds from (seed, index); test-time dropout and input noise std 0.02 in [-1, 1]"


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate_model` measured and made.

    Attributes
    ----------
    report
        JSON-compatible (apart from float rounding, see :func:`write_report`): ``metrics``
        (means), ``per_image``, ``baselines``, settings and notes.
    generated
        The model's uint8 RGB ``(3, H, W)`` images, in pair order.
    """

    report: dict[str, Any]
    generated: tuple[np.ndarray, ...]


def _check_pairs(pairs: Sequence[Pair]) -> None:
    if not pairs:
        raise EvaluationError("no pairs to evaluate")
    for pair in pairs:
        mask, image = np.asarray(pair.mask), np.asarray(pair.image)
        if mask.ndim != 3 or mask.shape[0] != 2 or image.ndim != 3 or image.shape[0] != 3:
            raise EvaluationError(
                f"pair {pair.name}: expected mask (2, H, W) and image (3, H, W), got {mask.shape} and {image.shape}"
            )
        if mask.shape[1:] != image.shape[1:]:
            raise EvaluationError(f"pair {pair.name}: mask {mask.shape[1:]} and image {image.shape[1:]} differ in size")
        if mask.shape[1] % 256 or mask.shape[2] % 256:
            raise EvaluationError(f"pair {pair.name}: size {mask.shape[1:]} is not a multiple of 256 px")


def _batches(shapes: Sequence[tuple[int, ...]], batch_size: int) -> Iterator[list[int]]:
    """Consecutive index groups of at most ``batch_size`` with equal shapes."""
    batch: list[int] = []
    for i, shape in enumerate(shapes):
        if batch and (len(batch) == batch_size or shapes[batch[0]] != shape):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def generate_images(
    model: LoadedModel, pairs: Sequence[Pair], *, deterministic: bool = True, seed: int = 0, batch_size: int = EVAL_BATCH_SIZE
) -> list[np.ndarray]:
    """Run the model on every mask exactly as the render engine does with the torch backend at fp32.

    Parameters
    ----------
    model
        The generator (run through a private inference view: the model itself is not changed).
    pairs
        Pairs whose masks ``(2, H, W)`` (sides multiples of 256) are translated.
    deterministic, seed
        No noise and no dropout; or seeded per image from ``seed`` and its index.
    batch_size
        Masks per generator call.

    Returns
    -------
    list of numpy.ndarray
        uint8 RGB ``(3, H, W)``, in pair order.
    """
    check_int(batch_size, "batch_size", "masks per generator call")
    _check_pairs(pairs)
    # exact fp32 torch whatever the machine, so that scores compare across machines
    config = RenderConfig(deterministic=deterministic, seed=seed, backend="torch", precision="fp32")
    network = WindowNetwork(model, config, batch_size)
    out: list[np.ndarray] = []
    for batch in _batches([p.mask.shape for p in pairs], batch_size):
        y = network(np.stack([pairs[i].mask for i in batch]), [window_seed(seed, i, 0) for i in batch])
        out.extend(to_uint8(y))
    return out


def _set_metrics(
    generated: Sequence[np.ndarray], pairs: Sequence[Pair], real_feats: np.ndarray, extractor: Extractor,
    constant: bool = False,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Mean metrics and per-image metrics of ``generated`` against ``pairs``' images."""
    per_image = [{"name": p.name, **image_metrics(g, p.image)} for g, p in zip(generated, pairs, strict=True)]
    # a constant baseline's images are all the same: compute their features once
    feats = np.repeat(extractor([generated[0]]), len(generated), axis=0) if constant else extractor(generated)
    means = {"l1": mean_l1(generated, [p.image for p in pairs])}
    means.update({key: float(np.mean([m[key] for m in per_image])) for key in ("psnr", "ssim")})
    means[FEATURE_DISTANCE_KEY] = frechet_distance(feats, real_feats)
    return means, per_image


def evaluate_model(
    model: LoadedModel,
    pairs: Sequence[Pair],
    *,
    mean_colour: Sequence[float] | np.ndarray | None = None,
    mean_colour_source: str = "given by the caller",
    deterministic: bool = True,
    seed: int = 0,
    batch_size: int = EVAL_BATCH_SIZE,
    feature_extractor: Extractor | None = None,
) -> EvaluationResult:
    """Evaluate ``model`` on ``pairs`` and on two baselines.

    Parameters
    ----------
    model
        The generator to evaluate (its ``spec.channel_order`` is honoured).
    pairs
        Held-out pairs, masks ``(2, H, W)`` (roads, buildings) and images ``(3, H, W)``,
        sizes multiples of 256.
    mean_colour, mean_colour_source
        RGB (0..255) of the "mean colour" baseline, normally the mean of the training
        images, and a description of where it came from; default: the mean of the
        evaluated real images (recorded as such).
    deterministic
        ``True``: no dropout, no input noise. ``False``: Pix2Pix test-time dropout and input
        noise (std 0.02 in [-1, 1]), seeded per image from ``seed`` and its index, so the
        result reproduces exactly.
    seed
        Seed of the stochastic draws and of the random-init baseline's weights.
    batch_size
        Masks per generator call.
    feature_extractor
        Any callable images → ``(N, D)`` features; default: a shared EfficientNet-Lite0
        extractor on the model's device.

    Returns
    -------
    EvaluationResult
        The report and the model's generated images.
    """
    check_int(batch_size, "batch_size", "masks per generator call")
    _check_pairs(pairs)
    colour = MeanColour.of_pairs(pairs) if mean_colour is None else MeanColour(tuple(mean_colour), mean_colour_source)
    extractor = feature_extractor or shared_extractor(str(model.device))
    mode = "deterministic" if deterministic else "stochastic"
    log.info("evaluating %s on %d pairs (%s, seed %d)", model.spec.name, len(pairs), mode, seed)

    real_feats = extractor([p.image for p in pairs])
    generated = generate_images(model, pairs, deterministic=deterministic, seed=seed, batch_size=batch_size)
    metrics, per_image = _set_metrics(generated, pairs, real_feats, extractor)
    baselines = _baselines(model, pairs, colour, real_feats, extractor, deterministic, seed, batch_size)
    log.info(
        "%s: l1 %.4f psnr %.2f dB ssim %.4f %s %.3f (mean colour l1 %.4f, random init l1 %.4f)",
        model.spec.name, metrics["l1"], metrics["psnr"], metrics["ssim"], FEATURE_DISTANCE_KEY,
        metrics[FEATURE_DISTANCE_KEY], baselines["mean_colour"]["l1"], baselines["random_init_generator"]["l1"],
    )
    report: dict[str, Any] = {
        "n_images": len(pairs), "mode": mode, "seed": seed, "model": _model_info(model), "metrics": metrics,
        "baselines": baselines, "feature_extractor": extractor_info(extractor), "notes": _notes(len(pairs)),
        "per_image": per_image,
    }
    return EvaluationResult(report, tuple(generated))


def _baselines(
    model: LoadedModel, pairs: Sequence[Pair], colour: MeanColour, real_feats: np.ndarray, extractor: Extractor,
    deterministic: bool, seed: int, batch_size: int,
) -> dict[str, dict[str, Any]]:
    """The mean-colour image and a random-init generator, measured like the model."""
    colour_metrics, _ = _set_metrics(mean_colour_images(colour, pairs), pairs, real_feats, extractor, constant=True)
    untrained = random_init_model(model.spec, model.device, seed)
    random_generated = generate_images(untrained, pairs, deterministic=deterministic, seed=seed, batch_size=batch_size)
    random_metrics, _ = _set_metrics(random_generated, pairs, real_feats, extractor)
    return {
        "mean_colour": {**colour.report(), **colour_metrics},
        "random_init_generator": {"init_seed": seed, "features": model.spec.features, **random_metrics},
    }


def _model_info(model: LoadedModel) -> dict[str, Any]:
    """Which model the report is about."""
    spec = model.spec
    return {
        "name": spec.name, "features": spec.features, "channel_order": list(spec.channel_order),
        "source": model.source, "sha256": model.sha256,
    }


def _notes(n_images: int) -> dict[str, str]:
    """What each reported number means."""
    distance = f"{FEATURE_DISTANCE_NOTE}; {n_images} images per set, so only comparable between runs on the same split"
    return {**_METRIC_NOTES, FEATURE_DISTANCE_KEY: distance, "stochastic": _STOCHASTIC_NOTE}


def _training_mean_colour(root: Path, split: str | None) -> MeanColour | None:
    """The mean colour of ``split``'s images, or ``None`` (with a warning when the split is empty)."""
    if not split:
        return None
    found = split_mean_colour(root, split)
    if found is None:
        log.warning("split %r of %s has no images; the mean-colour baseline uses the evaluated images", split, root)
        return None
    rgb, count = found
    return MeanColour(tuple(rgb), f"mean of the {count} images of split {split!r}")


def _heldout_pairs(root: Path, split: str) -> list[Pair]:
    """The pairs of ``split``; an error that says how to get some when there are none."""
    pairs = read_split(root, split)
    if not pairs:
        raise EvaluationError(
            f"no pairs in {root / split}; evaluate a split that has pairs, or prepare the dataset with a held-out "
            "region (a held-out fraction on the right of each image)",
            param="split",
        )
    return pairs


def run_evaluation(
    model: LoadedModel,
    data_dir: str | Path,
    split: str = "val",
    *,
    out_dir: str | Path,
    train_split_for_mean: str | None = "train",
    deterministic: bool = True,
    seed: int = 0,
    batch_size: int = EVAL_BATCH_SIZE,
    max_sheet_rows: int = 8,
    feature_extractor: Extractor | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on a split of a prepared dataset and write the outputs.

    Writes ``out_dir/report.json`` (:func:`write_report`) and ``out_dir/contact_sheet.png``
    (:func:`contact_sheet`). The mean-colour baseline uses the mean of the
    ``train_split_for_mean`` images when that split has any, else the evaluated images.

    Parameters
    ----------
    model
        The generator to evaluate.
    data_dir
        A prepared dataset (``satgen dataset prepare``).
    split
        The held-out split to evaluate.
    out_dir
        Output folder (created if missing, before any work).
    train_split_for_mean
        Split whose mean colour feeds the mean-colour baseline; ``None`` to use the
        evaluated images.
    deterministic, seed, batch_size, feature_extractor
        See :func:`evaluate_model`.
    max_sheet_rows
        Rows of the contact sheet.

    Returns
    -------
    dict
        The report as written (before rounding).
    """
    check_int(max_sheet_rows, "sheet_rows", "contact sheet rows")
    root, out = Path(data_dir), Path(out_dir)
    pairs = _heldout_pairs(root, split)
    ensure_dir(out)
    colour = _training_mean_colour(root, train_split_for_mean) or MeanColour.of_pairs(pairs)
    result = evaluate_model(
        model, pairs, mean_colour=colour.rgb, mean_colour_source=colour.source,
        deterministic=deterministic, seed=seed, batch_size=batch_size, feature_extractor=feature_extractor,
    )
    report = {"dataset": str(root), "split": split, **result.report}
    report["outputs"] = {"report": str(out / "report.json"), "contact_sheet": str(out / "contact_sheet.png")}
    contact_sheet(pairs, result.generated, out / "contact_sheet.png", max_rows=max_sheet_rows)
    write_report(report, out / "report.json")
    return report
