"""Evaluate a generator on a held-out split: pixel metrics, a feature distance, baselines, seams.

What is measured (see each module)
----------------------------------
* :mod:`~satgen_geo.evaluate.metrics`: per image L1 (``[0, 1]`` units), PSNR (dB) and
  SSIM; :func:`mean_l1` is the one held-out L1, used by the trainer's validation too;
* :mod:`~satgen_geo.evaluate.features` and :mod:`~satgen_geo.evaluate.frechet`: over the set,
  ``feature_distance_effnet_lite0``, the Fréchet distance between Gaussians fitted to
  EfficientNet-Lite0 features of the generated and the real images. This is **NOT**
  comparable to published FID numbers (Inception-v3 on tens of thousands of images); with
  few images it is dominated by the covariance estimate and is biased upward;
* :mod:`~satgen_geo.evaluate.baselines`: a constant image of the mean training colour and a
  randomly initialised generator of the same shape, on the same pairs;
* :mod:`~satgen_geo.evaluate.seams`: how visible the window boundaries of a render are;
* :mod:`~satgen_geo.evaluate.report`: the contact sheet PNG and the strict JSON report;
* :mod:`~satgen_geo.evaluate.run`: :func:`evaluate_model` (a typed
  :class:`EvaluationResult`) and :func:`run_evaluation` (a prepared split → files).
"""

from satgen_geo.errors import EvaluationError, MissingDependencyError
from satgen_geo.evaluate.features import FEATURE_DISTANCE_KEY, FEATURE_DISTANCE_NOTE, FeatureExtractor
from satgen_geo.evaluate.frechet import frechet_distance
from satgen_geo.evaluate.metrics import l1, mean_l1, psnr, ssim
from satgen_geo.evaluate.report import CONTACT_GAP_PX, contact_sheet, write_report
from satgen_geo.evaluate.run import EvaluationResult, evaluate_model, generate_images, run_evaluation
from satgen_geo.evaluate.seams import seam_score, seam_score_geotiff

__all__ = [
    "CONTACT_GAP_PX",
    "FEATURE_DISTANCE_KEY",
    "FEATURE_DISTANCE_NOTE",
    "EvaluationError",
    "EvaluationResult",
    "FeatureExtractor",
    "MissingDependencyError",
    "contact_sheet",
    "evaluate_model",
    "frechet_distance",
    "generate_images",
    "l1",
    "mean_l1",
    "psnr",
    "run_evaluation",
    "seam_score",
    "seam_score_geotiff",
    "ssim",
    "write_report",
]
