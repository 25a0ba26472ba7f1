"""Training pairs: prepare them from the supported layouts, store them, load them.

A prepared dataset is a folder::

    DIR/manifest.json                 sources, channel order, counts, how it was made
    DIR/{train,val}/images/NAME.png   RGB patch (256 × 256)
    DIR/{train,val}/masks/NAME.png    mask as RGB: red = roads, green = buildings (0/255)

The mask PNGs use the same colours as the original web editor, so they can be looked at
(and painted) with any image tool. ``val`` holds patches from a spatially separate region
of each large source image (the right-most part, with a one-patch gap), never overlapping
a training patch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from PIL import Image
from rasterio.io import DatasetReader
from rasterio.windows import Window
from shapely.geometry import box

from satgen_geo._atomic import scratch_dir
from satgen_geo._validate import check_int, check_number
from satgen_geo.errors import ConfigError, CRSError, InputFileError
from satgen_geo.geotiff import open_raster
from satgen_geo.grid import AOI, Grid, metric_crs
from satgen_geo.mask import MaskSource, load_features
from satgen_geo.osm.features import select_features
from satgen_geo.osm.roads import RoadConfig
from satgen_geo.rasterize import BAND_NAMES, prepare_shapes, rasterize_window

if TYPE_CHECKING:
    from satgen_geo.train.sam import SamConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
#: Largest patch side, and largest held-out fraction of an image's width.
MAX_PATCH_PX = 4096
MAX_HOLDOUT = 0.9
# Generator inputs are multiples of 256 px (model.generator.TILE_MULTIPLE; not imported: preparing data needs no torch).
_PATCH_MULTIPLE = 256
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: A patch with more than this fraction of pure-white (no-data) pixels is skipped.
_MAX_NODATA = 0.01
_WHITE = 250


@dataclass(frozen=True)
class Pair:
    """One training example: mask ``(2, H, W)`` (roads, buildings; 0/255) and image ``(3, H, W)``."""

    name: str
    mask: np.ndarray
    image: np.ndarray


@dataclass(frozen=True)
class PatchConfig:
    """How large images are cut into patches.

    Parameters
    ----------
    patch_px, stride_px
        Patch size (a multiple of 256 px, at most :data:`MAX_PATCH_PX`) and step (at least
        1/8 patch, which bounds the patches per image; a smaller stride gives overlapping
        training patches).
    holdout_right
        Fraction of each large image's width, on the right, reserved for ``val``, from 0 to
        :data:`MAX_HOLDOUT`; images narrower than four patches go entirely to ``train``.
    """

    patch_px: int = 256
    stride_px: int = 256
    holdout_right: float = 0.0

    def __post_init__(self) -> None:
        check_int(self.patch_px, "patch_px", "patch size (px)", minimum=_PATCH_MULTIPLE, maximum=MAX_PATCH_PX)
        if self.patch_px % _PATCH_MULTIPLE:
            raise ConfigError(f"patch size must be a multiple of {_PATCH_MULTIPLE} px, got {self.patch_px}", param="patch_px")
        check_int(self.stride_px, "stride_px", "patch stride (px)", minimum=self.patch_px // 8)
        check_number(self.holdout_right, "holdout_right", "held-out fraction", maximum=MAX_HOLDOUT)


@dataclass
class Summary:
    """Counts of what a preparation step wrote or skipped."""

    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    skipped_nodata: int = 0
    notes: list[str] = field(default_factory=list)


# --- reading and writing prepared datasets --------------------------------------------


def write_pair(root: Path, split: str, pair: Pair) -> None:
    """Store one pair under ``root/split``."""
    for sub, array in (("images", pair.image), ("masks", _mask_to_rgb(pair.mask))):
        folder = root / split / sub
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.moveaxis(array, 0, -1)).save(folder / f"{pair.name}.png")


def split_images(root: str | Path, split: str = "train") -> list[Path]:
    """The image files of one split of a prepared dataset, sorted by name (the one lister of pairs).

    Raises
    ------
    InputFileError
        If ``root`` is not a prepared dataset (``param="data"``).
    """
    root = Path(root)
    if not (root / "manifest.json").is_file():
        raise InputFileError(
            f"{root} is not a prepared dataset (no manifest.json); create one with 'satgen dataset prepare'",
            param="data",
        )
    return sorted((root / split / "images").glob("*.png"))


def read_split(root: str | Path, split: str = "train") -> list[Pair]:
    """Load every pair of one split of a prepared dataset."""
    root = Path(root)
    pairs = []
    for image_path in split_images(root, split):
        mask_path = root / split / "masks" / image_path.name
        if not mask_path.is_file():
            raise InputFileError(f"{image_path} has no mask {mask_path}; re-run 'satgen dataset prepare'")
        image = np.moveaxis(np.array(Image.open(image_path).convert("RGB")), -1, 0)
        mask_rgb = np.moveaxis(np.array(Image.open(mask_path).convert("RGB")), -1, 0)
        pairs.append(Pair(image_path.stem, np.where(mask_rgb[:2] > 127, 255, 0).astype(np.uint8), image))
    return pairs


def write_manifest(root: Path, summary: Summary, sources: Sequence[str], config: PatchConfig, layout: str) -> None:
    """Write ``manifest.json`` (merged with an existing one, so several sources can share a folder)."""
    path = root / "manifest.json"
    empty: dict[str, Any] = {"channel_order": ["roads", "buildings"], "parts": []}
    manifest = json.loads(path.read_text()) if path.is_file() else empty
    manifest["parts"].append({
        "layout": layout, "sources": list(sources), "patch_px": config.patch_px, "stride_px": config.stride_px,
        "holdout_right": config.holdout_right, "written": summary.written,
        "skipped_nodata": summary.skipped_nodata, "notes": summary.notes,
    })
    path.write_text(json.dumps(manifest, indent=2))


def _mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    return np.concatenate([mask, np.zeros_like(mask[:1])])


# --- preparing from the supported layouts ------------------------------------------------


def prepare_satgen_cv(src: str | Path, out: str | Path) -> Summary:
    """The original project's layout: ``images/*.png`` + ``masks/*_processed.tiff``.

    Those masks are ``(H, W, 2)`` with channel 0 = buildings and channel 1 = roads (the
    reverse of ours); they are converted, and the manifest says so.
    """
    import tifffile

    src, out = Path(src), Path(out)
    summary = Summary(notes=["converted channel order: source ch0=buildings, ch1=roads → roads, buildings"])
    log.info("%s: converting the SatGen-CV channel order (buildings, roads) to (roads, buildings)", src)
    for image_path in _images(src / "images"):
        mask_path = src / "masks" / f"{image_path.stem}_processed.tiff"
        if not mask_path.is_file():
            raise InputFileError(f"{image_path} has no mask {mask_path.name} in {src / 'masks'}")
        raw = tifffile.imread(mask_path)
        if raw.ndim != 3 or raw.shape[-1] != 2:
            raise InputFileError(f"{mask_path} has shape {raw.shape}; expected (H, W, 2) buildings/roads")
        mask = np.where(np.moveaxis(raw, -1, 0)[::-1] > 127, 255, 0).astype(np.uint8)
        _write_patches(out, image_path.stem, _load_rgb(image_path), mask, PatchConfig(), summary)
    write_manifest(out, summary, [str(src)], PatchConfig(), "satgen-cv")
    return summary


def prepare_single_class(src: str | Path, out: str | Path, label_class: str, config: PatchConfig) -> Summary:
    """Image/label folders with one known class (``roads`` or ``buildings``), e.g. Massachusetts or Inria.

    Labels (any image format, JPEG included) are thresholded at 127; the other channel is
    empty. Patches with white no-data areas are skipped.
    """
    if label_class not in ("roads", "buildings"):
        raise InputFileError(f"label class {label_class!r} must be roads or buildings")
    src, out = Path(src), Path(out)
    summary = Summary(notes=[f"labels are {label_class} only; the other channel is empty"])
    for image_path in _images(src / "images"):
        label_path = _matching(src / "labels", image_path.stem)
        label = np.asarray(Image.open(label_path).convert("L")) > 127
        mask = np.zeros((2, *label.shape), dtype=np.uint8)
        mask[0 if label_class == "roads" else 1][label] = 255
        _write_patches(out, image_path.stem, _load_rgb(image_path), mask, config, summary)
    write_manifest(out, summary, [str(src)], config, f"single-class:{label_class}")
    return summary


def prepare_two_class(src: str | Path, out: str | Path, config: PatchConfig) -> Summary:
    """Image/mask folders with both classes, as ``satgen dataset complete`` writes them.

    ``images/NAME.*`` with ``masks/NAME.png``, an RGB mask: red = roads, green = buildings
    (thresholded at 127).
    """
    src, out = Path(src), Path(out)
    summary = Summary(notes=["masks with both classes (red = roads, green = buildings)"])
    for image_path in _images(src / "images"):
        mask_rgb = _load_rgb(_matching(src / "masks", image_path.stem))
        mask = np.where(mask_rgb[:2] > 127, 255, 0).astype(np.uint8)
        _write_patches(out, image_path.stem, _load_rgb(image_path), mask, config, summary)
    write_manifest(out, summary, [str(src)], config, "two-class")
    return summary


def _images(folder: Path) -> list[Path]:
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise InputFileError(f"no images in {folder}; expected {folder}/*.png or *.jpg")
    return paths


def _matching(folder: Path, stem: str) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise InputFileError(f"no label for image {stem} in {folder}")


def _load_rgb(path: Path) -> np.ndarray:
    try:
        return np.moveaxis(np.asarray(Image.open(path).convert("RGB")), -1, 0)
    except OSError as err:
        raise InputFileError(f"cannot read image {path} ({err})") from None


def iter_patches(height: int, width: int, config: PatchConfig) -> Iterator[tuple[str, int, int]]:
    """Yield ``(split, row, col)`` patch origins; the held-out right strip is separated by a gap."""
    size, stride = config.patch_px, config.stride_px
    holdout = config.holdout_right > 0 and width >= 4 * size
    val_x = int(width * (1 - config.holdout_right)) if holdout else width
    for row in range(0, height - size + 1, stride):
        for col in range(0, width - size + 1, stride):
            if col + size <= val_x - (size if holdout else 0):
                yield "train", row, col
    if holdout:  # held-out patches do not overlap each other either
        for row in range(0, height - size + 1, size):
            for col in range(val_x, width - size + 1, size):
                yield "val", row, col


def _write_patches(out: Path, stem: str, image: np.ndarray, mask: np.ndarray, config: PatchConfig, summary: Summary) -> None:
    if image.shape[1:] != mask.shape[1:]:
        raise InputFileError(f"{stem}: image {image.shape[1:]} and mask {mask.shape[1:]} differ in size")
    size = config.patch_px
    for split, row, col in iter_patches(image.shape[1], image.shape[2], config):
        img = image[:, row : row + size, col : col + size]
        if (img.min(axis=0) >= _WHITE).mean() > _MAX_NODATA:
            summary.skipped_nodata += 1
            continue
        write_pair(out, split, Pair(f"{stem}_x{col}_y{row}", mask[:, row : row + size, col : col + size], img))
        summary.written[split] += 1


def prepare_from_ortho(
    ortho: str | Path, out: str | Path, source: MaskSource, config: PatchConfig, roads: RoadConfig | None = None,
    sam: SamConfig | None = None,
) -> Summary:
    """Pairs from a georeferenced orthophoto and OSM: the mask is drawn on the image's own grid.

    ``source`` gives the features (a local ``osm`` file, or Overpass); its area is the
    orthophoto's extent. The photo must be north-up in a metric CRS with at least 3 bands.
    With ``sam``, the class ``sam.missing`` comes from SAM 3 instead of OSM
    (:func:`satgen_geo.train.sam_ortho.complete_ortho`, over the whole photo first).
    """
    out = Path(out)
    summary = Summary(notes=[f"masks drawn from OSM ({source.describe()}) on the orthophoto grid"])
    with ExitStack() as stack:
        src = stack.enter_context(open_raster(ortho))
        if src.count < 3 or src.transform.b or src.transform.d:
            raise InputFileError(f"{ortho} must be a north-up RGB raster (it has {src.count} band(s)); warp it first")
        grid = Grid(metric_crs(src.crs) if src.crs else _no_crs(ortho), src.transform, src.width, src.height)
        raw, _ = load_features(source, AOI(box(*src.bounds), grid.crs))
        shapes = prepare_shapes(select_features(raw, roads).to_crs(grid.crs))
        added = _sam_mask(ortho, sam, stack, summary) if sam else None
        added_band = BAND_NAMES.index(sam.missing) if sam else 0
        size = config.patch_px
        for split, row, col in iter_patches(src.height, src.width, config):
            window = Window(col, row, size, size)
            image = src.read((1, 2, 3), window=window)
            if image.dtype != np.uint8:
                raise InputFileError(f"{ortho} is {image.dtype}; convert it to 8-bit RGB (gdal_translate -ot Byte -scale)")
            if (image.min(axis=0) >= _WHITE).mean() > _MAX_NODATA or (src.dataset_mask(window=window) == 0).any():
                summary.skipped_nodata += 1
                continue
            mask = rasterize_window(shapes, grid, window)
            if added is not None:
                mask[added_band] = added.read(added_band + 1, window=window)
            write_pair(out, split, Pair(f"{Path(ortho).stem}_x{col}_y{row}", mask, image))
            summary.written[split] += 1
    write_manifest(out, summary, [str(ortho)], config, "ortho+osm" + ("+sam" if sam else ""))
    return summary


def _sam_mask(ortho: str | Path, sam: SamConfig, stack: ExitStack, summary: Summary) -> DatasetReader:
    """SAM 3's mask of the whole orthophoto, open; ``stack`` closes it and removes its temporary folder."""
    from satgen_geo.train.sam_ortho import complete_ortho

    path = stack.enter_context(scratch_dir()) / "sam.tif"
    result = complete_ortho(ortho, path, sam)
    summary.notes.append(f"{sam.missing} from SAM 3 (prompt {sam.prompt!r}, {result.coverage:.1%} of the pixels), not OSM")
    return stack.enter_context(open_raster(path))


def _no_crs(path: str | Path) -> NoReturn:
    raise CRSError(f"{path} has no CRS; assign one with gdal_edit.py -a_srs EPSG:<code>")
