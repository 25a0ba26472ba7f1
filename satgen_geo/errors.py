"""Exceptions raised by satgen-geo.

Every error the toolkit raises on bad input derives from :class:`SatgenError`, and its
message is one line that says what is wrong and how to fix it, in terms of concepts (the
area, the pixel size, the window overlap), never of one front end's flags. When the error
is about one setting, ``param`` names it as a concept (``"gsd_m"``, ``"overlap_px"``,
``"osm_file"``, …: see :data:`PARAMS`); each front end renders it its own way (a CLI flag,
a QGIS parameter label, a JSON field).
"""

from __future__ import annotations

#: Every ``param`` a core error may carry, with what it means. Front ends map these names
#: to their own controls; a test checks that each front end knows every one it exposes.
PARAMS: dict[str, str] = {
    "bbox": "the area as west, south, east, north in EPSG:4326 degrees",
    "aoi_file": "the area as a polygon file",
    "osm_file": "a local OSM extract or vector file",
    "roads_file": "a vector file of road lines",
    "buildings_file": "a vector file of building polygons",
    "gsd_m": "the pixel size in metres",
    "crs": "the output coordinate reference system",
    "max_area_km2": "the largest area downloaded from Overpass",
    "max_pixels": "the largest raster built or rendered, in pixels",
    "overpass_url": "the Overpass API address",
    "overpass_timeout_s": "the time one Overpass request may take",
    "overpass_retries": "the retries after a failed Overpass request",
    "overpass_backoff_s": "the wait before the first Overpass retry",
    "block_px": "the side of one rasterization block in pixels",
    "road_classes": "the highway classes drawn as roads",
    "road_widths": "the drawn width of each highway class",
    "mask": "the input mask GeoTIFF",
    "output": "the output file",
    "mask_output": "the extra mask output file",
    "checkpoint": "the generator checkpoint",
    "generator": "the generator network's shape (input and output channels, base width)",
    "device": "the compute device",
    "precision": "the numeric precision",
    "backend": "the inference backend (torch, OpenVINO or ONNX Runtime)",
    "cache": "the cache folder (SATGEN_CACHE_DIR)",
    "seed": "the random seed",
    "overlap_px": "the window overlap in pixels",
    "batch_size": "the windows per network call",
    "max_windows": "the most windows one render may compute",
    "strip_px": "the widest strip rendered at once",
    "region": "the part of the mask to render",
    "max_batch_size": "the largest accepted batch size",
    "empty_noise_std": "the extra noise on empty render windows",
    "empty_variance": "the mask variance below which a render window counts as empty",
    "upload": "the uploaded file",
    "store": "the regional OSM store (a GeoPackage from osm extract)",
    "outdir": "the output folder of a region job",
    "chunk_px": "the side of one region chunk in pixels",
    "tile": "the map tile address (zoom/x/y) or format",
    "zoom": "the map zoom levels served or exported",
    "tile_cache": "the tile server's chunk cache size",
    "max_render_chunks": "the most chunks one map tile may render or read",
    "tile_source": "the data a tile server or tile export renders",
    "max_tiles": "the most tiles one tile export may write",
    "cluster_workers": "the local Dask worker processes of a region job",
    "scheduler": "the address of an existing Dask scheduler",
    "node_index": "where osm extract keeps node locations (memory or a temporary file)",
    "extract_batch": "the features osm extract buffers before writing them",
    "max_upload_bytes": "the largest upload the server accepts",
    "queue_size": "the server's job slots (running plus waiting)",
    "workers": "the server's jobs rendered at the same time",
    "port": "the server's TCP port",
    "cors_origins": "the web pages allowed to call the server",
    "data": "the prepared training dataset folders",
    "patch_px": "the training patch size in pixels",
    "stride_px": "the step between training patches in pixels",
    "holdout_right": "the held-out fraction on the right of each image",
    "split": "the part of a prepared dataset evaluated (train or val)",
    "model_name": "the name stored with a trained model",
    "features": "the generator's base width being trained",
    "disc_features": "the discriminator's base width",
    "epochs": "the training epochs",
    "max_steps": "the training steps after which a run stops",
    "checkpoint_every": "the epochs between training checkpoints",
    "resume": "the training checkpoint a run continues from",
    "lr": "the learning rate at the start of training",
    "lr_min": "the learning rate at the end of its cosine schedule",
    "betas": "the Adam optimiser's two momentum coefficients",
    "lambda_gan": "the weight of the adversarial loss",
    "lambda_l1": "the weight of the L1 loss",
    "lambda_perc": "the weight of the perceptual loss",
    "vgg_weights": "the VGG-19 weights file of the perceptual loss",
    "perceptual_net": "the network of the perceptual loss (vgg19 or effnet-lite2)",
    "lambda_period2": "the weight of the loss on period-2 (checkerboard) patterns",
    "building_oversample": "how much more often training draws pairs that label buildings",
    "init_generator": "the generator checkpoint a training run starts from",
    "input_noise_std": "the Gaussian noise added to input masks (training and rendering)",
    "jitter": "the training colour jitter strength",
    "tile_px": "the window size in pixels",
    "strip_rows": "the rows read at a time when scoring seams",
    "sheet_rows": "the rows of the evaluation contact sheet",
    "sam_model": "the SAM 3 model (a local folder or an already-downloaded model id)",
    "missing": "the class a dataset lacks, drawn by SAM 3 (roads or buildings)",
    "prompt": "the text prompt SAM 3 segments",
    "threshold": "the score above which a SAM 3 instance is kept",
    "min_area_px": "the smallest SAM 3 instance kept, in pixels",
    "images": "the folder of images",
    "labels": "the folder of one-class label images",
    "label_raster": "the label raster of the other class, on the image's grid",
    "ortho": "the georeferenced RGB image (orthophoto)",
}


class SatgenError(Exception):
    """Root of all satgen-geo errors.

    Parameters
    ----------
    message
        One line: what is wrong and how to fix it, naming concepts rather than flags.
    param
        The setting the error is about, a key of :data:`PARAMS`, or ``None``.
    """

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ConfigError(SatgenError, ValueError):
    """A setting is out of its accepted range or of the wrong type."""


class LimitError(ConfigError):
    """The requested work (pixels, windows, batch) is over a configured limit; the message names the limit."""


class AOIError(SatgenError, ValueError):
    """A bounding box or area of interest is invalid (order, range, zero or too large area)."""


class AreaTooLargeError(AOIError, LimitError):
    """The requested area exceeds a configured limit."""


class CRSError(SatgenError, ValueError):
    """A coordinate reference system is missing or unusable for the requested operation."""


class InputFileError(SatgenError, ValueError):
    """An input file is missing, corrupt, or in an unsupported format."""


class OSMDownloadError(SatgenError):
    """OpenStreetMap data could not be downloaded (offline, server error, rate limit)."""


class OutputError(SatgenError, OSError):
    """An output file cannot be written."""


class CheckpointError(SatgenError, ValueError):
    """A model checkpoint is missing, unreadable or does not match the architecture."""


class DeviceError(SatgenError, RuntimeError):
    """The requested compute device is unknown or not available on this machine."""


class CancelledError(SatgenError):
    """The operation was cancelled by the caller's ``cancel`` callable."""


class EvaluationError(SatgenError, ValueError):
    """Evaluation input is unusable (shapes, empty split, too few samples)."""


class MissingDependencyError(SatgenError, ImportError):
    """An optional dependency (an extra such as ``satgen-geo[eval]``) is not installed."""
