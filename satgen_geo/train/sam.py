"""SAM 3 mask completion: draw the class that a single-class dataset lacks (the ``[sam]`` extra).

Massachusetts labels roads only, Inria buildings only. :func:`complete_dataset` runs SAM 3
(Hugging Face ``Sam3Model``, promptable concept segmentation) with a text prompt ("building" or
"road") on every image, keeps the instances that score above :attr:`SamConfig.threshold` and
cover at least :attr:`SamConfig.min_area_px`, merges them, and writes::

    OUT/images/NAME.jpg     the image, copied unchanged
    OUT/masks/NAME.png      RGB: red = roads, green = buildings, blue = 0

The label's channel holds the label's own grey values, copied untouched (JPEG labels are not
re-thresholded); SAM's channel is 0/255. ``satgen dataset prepare OUT --layout both`` cuts that
folder into training pairs. Georeferenced images are done window by window by
:mod:`satgen_geo.train.sam_ortho`.

Weights come from a local folder or a model already in the Hugging Face cache
(``local_files_only``): nothing is ever downloaded. ``transformers`` is imported only when a
model is loaded. The image half of ``Sam3Processor`` needs torchvision, whose PyPI wheels do not
run with CPU-only torch, so images are prepared here as it prepares them (resized to the model's
input size with antialiased bilinear resampling, scaled to 0..1, normalised with mean = std = 0.5)
and the prompt goes through the model's own tokenizer.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from satgen_geo._atomic import atomic_path, check_distinct, ensure_dir, root_cause
from satgen_geo._validate import check_choice, check_int, check_number
from satgen_geo.errors import CheckpointError, ConfigError, InputFileError, MissingDependencyError
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.rasterize import BAND_NAMES
from satgen_geo.train.datasets import _images, _load_rgb, _matching

log = logging.getLogger(__name__)

#: The text prompt of each class unless :attr:`SamConfig.prompt` says otherwise.
DEFAULT_PROMPTS = {"roads": "road", "buildings": "building"}
#: Largest :attr:`SamConfig.batch_size` (memory grows with it: SAM 3 sees 1008 px inputs).
MAX_BATCH_SIZE = 32
#: Largest :attr:`SamConfig.window_px` of the georeferenced path.
MAX_WINDOW_PX = 4096
#: A mask pixel belongs to an instance when SAM's mask probability is above this (the processor's default).
MASK_THRESHOLD = 0.5
_HOW_TO_GET = (
    "nothing is downloaded here, so fetch it beforehand, e.g. 'hf download facebook/sam3 --local-dir sam3' "
    "(a gated model: accept its licence on huggingface.co first), and give that folder"
)


@dataclass(frozen=True)
class SamConfig:
    """Which class SAM 3 adds, and how.

    Parameters
    ----------
    missing
        The class the labels lack, ``"buildings"`` or ``"roads"``; SAM 3 draws it.
    model
        A folder holding a Hugging Face ``Sam3Model`` and its tokenizer, or the id of one already
        in the Hugging Face cache (never downloaded).
    prompt
        The text SAM 3 segments; empty: ``"building"`` or ``"road"``.
    threshold
        Instances scoring above this (0 to 1) are kept.
    min_area_px
        Kept instances covering fewer image pixels are dropped (0 keeps all); measured on SAM's
        mask grid and scaled to the image.
    batch_size
        Images (or windows) per network call, 1 to :data:`MAX_BATCH_SIZE`.
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    window_px, overlap_px
        Georeferenced images only: the side of the windows SAM 3 sees (64 to
        :data:`MAX_WINDOW_PX`; 1008 is the model's own input size) and their overlap (at most half
        a window).
    """

    missing: str
    model: str | os.PathLike[str]
    prompt: str = ""
    threshold: float = 0.5
    min_area_px: int = 16
    batch_size: int = 2
    device: str = "auto"
    window_px: int = 1008
    overlap_px: int = 128

    def __post_init__(self) -> None:
        check_choice(self.missing, "missing", "missing class", BAND_NAMES)
        if not isinstance(self.model, (str, os.PathLike)) or not str(self.model).strip():
            raise ConfigError(f"give the SAM 3 model (a folder or a downloaded model id), got {self.model!r}", param="sam_model")
        if not isinstance(self.prompt, str):
            raise ConfigError(f"the text prompt must be text, got {self.prompt!r}", param="prompt")
        object.__setattr__(self, "prompt", self.prompt.strip() or DEFAULT_PROMPTS[self.missing])
        check_number(self.threshold, "threshold", "instance score threshold", maximum=1.0)
        check_int(self.min_area_px, "min_area_px", "smallest instance (px)", minimum=0)
        check_int(self.batch_size, "batch_size", "SAM 3 batch size", maximum=MAX_BATCH_SIZE)
        if not isinstance(self.device, str):
            raise ConfigError(f"device must be a name such as auto, cpu or cuda, got {self.device!r}", param="device")
        check_int(self.window_px, "tile_px", "SAM 3 window size (px)", minimum=64, maximum=MAX_WINDOW_PX)
        check_int(self.overlap_px, "overlap_px", "SAM 3 window overlap (px)", minimum=0, maximum=self.window_px // 2)

    @property
    def known(self) -> str:
        """The class the labels hold (the other one)."""
        return next(name for name in BAND_NAMES if name != self.missing)


class SamSegmenter:
    """SAM 3 on its device, with the prompt tokenized once; call it on images to get their masks.

    Raises
    ------
    MissingDependencyError
        When ``transformers`` (5.x, with ``Sam3Model``) is not installed.
    CheckpointError
        When the weights are not in the folder given, nor in the Hugging Face cache.
    DeviceError
        When the device is unknown or unavailable.
    """

    def __init__(self, config: SamConfig) -> None:
        from satgen_geo.model.loaded import resolve_device

        self.config = config
        self.device = resolve_device(config.device)
        model, tokenizer = _load_weights(str(config.model))
        self.model = model.to(self.device)
        size = model.config.image_size
        self.input_px = (size, size) if isinstance(size, int) else tuple(size)
        tokens = tokenizer([config.prompt], padding="max_length", truncation=True, return_tensors="pt",
                           max_length=model.config.text_config.max_position_embeddings)
        self.input_ids = tokens["input_ids"].to(self.device)
        self.attention_mask = tokens["attention_mask"].to(self.device)
        log.info("SAM 3 from %s on %s, prompt %r", config.model, self.device, config.prompt)

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The merged mask, ``(H, W)`` bool, of each uint8 ``(3, H, W)`` image (sizes may differ)."""
        pixels = torch.cat([self._pixels(image) for image in images])
        count = len(images)
        out = self.model(pixel_values=pixels, input_ids=self.input_ids.expand(count, -1),
                         attention_mask=self.attention_mask.expand(count, -1))
        scores = out.pred_logits.sigmoid()
        if out.presence_logits is not None:  # how sure SAM 3 is that the concept is in the image at all
            scores = scores * out.presence_logits.sigmoid()
        return [self._merge(scores[i], out.pred_masks[i].float().sigmoid(), image.shape[1:]) for i, image in enumerate(images)]

    def _pixels(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device, torch.float32)[None]
        x = F.interpolate(x, size=self.input_px, mode="bilinear", antialias=True, align_corners=False)
        return (x / 255.0 - 0.5) / 0.5

    def _merge(self, scores: torch.Tensor, probs: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """The union of the instances above the threshold and area, upsampled to ``size``."""
        probs = probs[scores > self.config.threshold]
        cell_px = size[0] * size[1] / (probs.shape[-2] * probs.shape[-1])
        probs = probs[(probs > MASK_THRESHOLD).sum(dim=(1, 2)) * cell_px >= self.config.min_area_px]
        if not len(probs):
            return np.zeros(size, dtype=bool)
        union = F.interpolate(probs.amax(dim=0)[None, None], size=size, mode="bilinear", align_corners=False)
        return (union[0, 0] > MASK_THRESHOLD).cpu().numpy()


def _load_weights(model: str) -> tuple[Any, Any]:
    """``Sam3Model`` and its tokenizer from a folder or the Hugging Face cache, never from the network."""
    try:
        from transformers import AutoTokenizer, Sam3Model
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise MissingDependencyError(
            "SAM 3 mask completion needs Hugging Face transformers 5 (Sam3Model): pip install 'satgen-geo[sam]'",
            param="sam_model",
        ) from None
    folder = Path(model).expanduser()
    source = str(folder) if folder.is_dir() else model
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its loading bar would cut through the caller's progress display
    try:
        network = Sam3Model.from_pretrained(source, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        reason = root_cause(err) if folder.is_dir() else "not a folder, and not in the Hugging Face cache"
        raise CheckpointError(f"cannot load SAM 3 from {model!r} ({reason}); {_HOW_TO_GET}", param="sam_model") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return network.eval(), tokenizer


# --- image folders -----------------------------------------------------------------------


@dataclass
class CompletionSummary:
    """What :func:`complete_dataset` did: files completed, skipped as already complete, failed."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    #: The fraction of pixels SAM 3 marked, per file completed in this run.
    coverages: list[float] = field(default_factory=list)

    @property
    def mean_coverage(self) -> float | None:
        """Mean fraction of pixels SAM 3 marked in the files completed in this run (``None``: none)."""
        return float(np.mean(self.coverages)) if self.coverages else None


def complete_dataset(
    images: str | Path,
    labels: str | Path,
    out: str | Path,
    config: SamConfig,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> CompletionSummary:
    """Add SAM 3's channel to every image of ``images`` whose one-class label is in ``labels``.

    Writes ``out/images`` and ``out/masks`` (see the module docstring), each file atomically.
    Files whose outputs are already there, readable and of the image's size are skipped (the
    model is not even loaded when nothing is left); an image or label that cannot be read, or
    whose sizes differ, is logged and counted as failed, and the others go on.

    Raises
    ------
    InputFileError
        When ``images`` holds no image or ``labels`` is not a folder.
    MissingDependencyError, CheckpointError, DeviceError
        See :class:`SamSegmenter`.
    OutputError
        When the outputs cannot be written.
    """
    images, labels, out = Path(images), Path(labels), Path(out)
    sources = _images(images)
    if not labels.is_dir():
        raise InputFileError(f"label folder {labels} does not exist; give the folder of one-class labels", param="labels")
    for sub in ("images", "masks"):
        check_distinct(out / sub, "output", {"images": images, "labels": labels})
    summary = CompletionSummary()
    todo = [path for path in sources if not _finished(path, out)]
    summary.skipped = len(sources) - len(todo)
    if todo:  # the weights load before any progress shows, so that a bad model is the first thing said
        segment = SamSegmenter(config)
        for sub in ("images", "masks"):
            ensure_dir(out / sub)
    tick = report(progress)
    tick(summary.skipped, len(sources), "sam")
    for batch in _batches(todo, config.batch_size):
        check_cancel(cancel)
        pairs = [pair for pair in (_read_pair(path, labels, summary) for path in batch) if pair is not None]
        if pairs:
            for (path, _, label), added in zip(pairs, segment([image for _, image, _ in pairs]), strict=True):
                _write(out, path, label, added, config)
                summary.coverages.append(float(added.mean()))
                summary.done += 1
        tick(summary.skipped + summary.done + summary.failed, len(sources), "sam")
    return summary


def _batches(paths: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def _outputs(image: Path, out: Path) -> tuple[Path, Path]:
    return out / "images" / image.name, out / "masks" / f"{image.stem}.png"


def _finished(image: Path, out: Path) -> bool:
    """Whether ``image``'s outputs exist, the copy whole and the mask a readable RGB PNG of its size."""
    copy, mask = _outputs(image, out)
    if not mask.is_file():
        return False
    try:
        with Image.open(mask) as written, Image.open(image) as source:
            written.load()
            finished = written.mode == "RGB" and written.size == source.size \
                and copy.is_file() and copy.stat().st_size == image.stat().st_size
    except OSError:
        finished = False
    if not finished:
        log.info("redoing %s: its output is incomplete or unreadable", image.name)
    return finished


def _read_pair(path: Path, labels: Path, summary: CompletionSummary) -> tuple[Path, np.ndarray, np.ndarray] | None:
    """``(path, image, label)``, or ``None`` (logged, counted as failed) when either cannot be used."""
    try:
        image = _load_rgb(path)
        label_path = _matching(labels, path.stem)
        try:
            with Image.open(label_path) as opened:
                label = np.asarray(opened.convert("L"))
        except OSError as err:
            raise InputFileError(f"cannot read label {label_path} ({err})") from None
        if label.shape != image.shape[1:]:
            raise InputFileError(f"image {path} is {image.shape[2]}×{image.shape[1]} px but its label is "
                                 f"{label.shape[1]}×{label.shape[0]} px")
    except InputFileError as err:
        log.warning("skipped %s: %s", path.name, err)
        summary.failed += 1
        return None
    return path, image, label


def _write(out: Path, image: Path, label: np.ndarray, added: np.ndarray, config: SamConfig) -> None:
    """Copy the image, then write the mask (the mask last: it marks the file as done)."""
    copy, mask_path = _outputs(image, out)
    mask = np.zeros((*label.shape, 3), dtype=np.uint8)
    mask[..., BAND_NAMES.index(config.known)] = label
    mask[..., BAND_NAMES.index(config.missing)] = np.where(added, 255, 0)
    with atomic_path(copy) as tmp:
        shutil.copyfile(image, tmp)
    with atomic_path(mask_path) as tmp:
        Image.fromarray(mask).save(tmp, format="PNG")
