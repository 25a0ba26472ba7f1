"""How far L1 can go on the held-out split with these masks: the numbers behind the model card.

Compares the shipped model with constant-colour predictors, with its own texture shrunk
towards the training mean colour, and with two oracles that peek at the held-out images
(lower bounds, not baselines). Prints two tables; takes about a minute on a 2-core CPU.

Usage: ``python scripts/heldout_bounds.py [DATASET] [CHECKPOINT]`` (defaults: the dataset
``scripts/train_default_model.sh`` prepares, and the shipped model).
"""

from __future__ import annotations

import sys

import numpy as np

from satgen_geo.evaluate import FEATURE_DISTANCE_KEY, FeatureExtractor, evaluate_model, frechet_distance, mean_l1
from satgen_geo.model.loaded import load_model
from satgen_geo.train.datasets import Pair, read_split

ALPHAS = (0.25, 0.5, 0.75)


def pixels(images: np.ndarray) -> np.ndarray:
    """``(N, 3, H, W)`` → ``(N·H·W, 3)``."""
    return np.moveaxis(images, 1, -1).reshape(-1, 3)


def as_images(colour: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A constant RGB colour (or per-pixel colours) as uint8 images shaped like ``like``."""
    return np.clip(np.rint(np.broadcast_to(colour, like.shape)), 0, 255).astype(np.uint8)


def table(
    title: str, pairs: list[Pair], reference: list[Pair], checkpoint: str | None, extractor: FeatureExtractor,
    with_features: bool,
) -> None:
    """Print L1 (and feature distance) of each predictor on ``pairs``; colours come from ``reference``."""
    real = np.stack([p.image for p in pairs])
    ref = pixels(np.stack([p.image for p in reference]))
    road_ref = np.concatenate([p.mask[0].reshape(-1) > 0 for p in reference])
    mean, median = ref.mean(axis=0), np.median(ref, axis=0)
    result = evaluate_model(load_model(checkpoint), pairs, mean_colour=mean, feature_extractor=extractor)
    model = np.stack(result.generated).astype(np.float64)
    colour = mean[None, :, None, None]
    roads = np.stack([p.mask[0] > 0 for p in pairs])[:, None]
    rows: list[tuple[str, np.ndarray]] = [
        ("model (deterministic)", model),
        *[(f"model texture × {a} around the mean colour", colour + a * (model - colour)) for a in ALPHAS],
        ("mean colour of the reference patches", colour),
        ("median colour (the L1-optimal constant there)", median[None, :, None, None]),
        ("road / other pixels: their mean colours there",
         np.where(roads, ref[road_ref].mean(axis=0)[None, :, None, None], ref[~road_ref].mean(axis=0)[None, :, None, None])),
        ("ORACLE best constant (these images' median)", np.median(pixels(real), axis=0)[None, :, None, None]),
    ]
    empty = np.array([p.mask.max() == 0 for p in pairs])
    if empty.sum() > 1:  # every empty mask gets the same output, so this bounds any mask-only model
        best = model.copy()
        best[empty] = np.median(real[empty], axis=0)
        rows.append((f"ORACLE best output for the {empty.sum()} empty masks (model elsewhere)", best))
    real_feats = extractor(list(real)) if with_features else None
    print(f"\n{title}: {len(pairs)} patches, reference colours from {len(reference)} training patches")
    print(f"{'predictor':<72} {'L1':>7} {'feature dist':>12}")
    for name, images in rows:
        generated = as_images(images, real)
        score = mean_l1(list(generated), list(real))
        distance = f"{frechet_distance(extractor(list(generated)), real_feats):.1f}" if with_features else "-"
        print(f"{name:<72} {score:7.4f} {distance:>12}")
    metrics = result.report["metrics"]
    print(f"(evaluate's own numbers: model L1 {metrics['l1']:.4f}, {FEATURE_DISTANCE_KEY} {metrics[FEATURE_DISTANCE_KEY]:.1f})")


def main() -> None:
    data = sys.argv[1] if len(sys.argv) > 1 else "build/default-data"
    checkpoint = sys.argv[2] if len(sys.argv) > 2 else None
    train, held_out = read_split(data, "train"), read_split(data, "val")
    massachusetts = [p for p in train if p.name.startswith("1007") and "_patch_" not in p.name]
    extractor = FeatureExtractor()
    table("HELD-OUT (val)", held_out, train, checkpoint, extractor, with_features=True)
    table("TRAINING Massachusetts road-only patches (seen in training)", massachusetts, train, checkpoint, extractor,
          with_features=False)


if __name__ == "__main__":
    main()
