"""The Pix2Pix training loop (SatGen-CV recipe), with resume, atomic checkpoints and logs.

Checkpoints use the original SatGen-CV training layout (``generator_state_dict``,
``discriminator_state_dict``, optimizer and scheduler states, ``epoch``, ``global_step``,
``config``), so :func:`satgen_geo.model.load_generator` reads them directly, and a run can
be resumed from them. Every value in them is a tensor or a plain container, loadable with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from satgen_geo._atomic import atomic_path, ensure_dir
from satgen_geo._validate import check_choice, check_int, check_number
from satgen_geo.errors import CheckpointError, ConfigError, InputFileError
from satgen_geo.evaluate.metrics import mean_l1
from satgen_geo.evaluate.run import EVAL_BATCH_SIZE, generate_images
from satgen_geo.model.checkpoint import save_generator
from satgen_geo.model.discriminator import PatchDiscriminator
from satgen_geo.model.generator import MAX_FEATURES, UNetGenerator
from satgen_geo.model.loaded import LoadedModel, load_model, resolve_device
from satgen_geo.model.spec import ModelSpec
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.train.augment import PairDataset
from satgen_geo.train.checkerboard import icnr_init_, period2_loss
from satgen_geo.train.datasets import Pair, read_split
from satgen_geo.train.perceptual import PERCEPTUAL_NETS, make_perceptual_loss
from satgen_geo.train.rng import SEED_RANGE, RunStreams, seeded_init

log = logging.getLogger(__name__)

LOG_FIELDS = (
    "epoch", "step", "lr", "loss_d", "loss_g_gan", "loss_g_l1", "loss_g_perc", "loss_g_period2", "val_l1", "seconds",
)
_REAL_LABEL = 0.9  # one-sided label smoothing for the discriminator
#: Upper limits of the settings that control work and memory (see :class:`TrainConfig`).
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 256
MAX_BETA = 0.9999
MAX_OVERSAMPLE = 1000.0


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and run options (defaults: the SatGen-CV recipe), checked when made.

    ``max_steps`` stops early (for smoke tests and time-boxed runs; the learning rate still
    follows the full ``epochs`` schedule, so a resumed run continues it); ``checkpoint_every``
    is in epochs. ``data`` are prepared dataset folders (``satgen dataset prepare``).

    Accepted ranges: ``features`` and ``disc_features`` 1 to :data:`MAX_FEATURES`;
    ``epochs`` 1 to :data:`MAX_EPOCHS`; ``batch_size`` 1 to :data:`MAX_BATCH_SIZE`;
    ``max_steps`` (or ``None``) and ``checkpoint_every`` at least 1; ``lr`` above 0 and at
    most 1; ``lr_min`` from 0 to ``lr``; each of ``betas`` from 0 to :data:`MAX_BETA`; the
    loss weights at least 0; ``input_noise_std`` and ``jitter`` from 0 to 1; ``seed`` from
    -2**63 to 2**64 - 1 (what ``torch.manual_seed`` accepts, as for rendering);
    ``building_oversample`` from 1 to :data:`MAX_OVERSAMPLE`.

    Options beyond the SatGen-CV recipe (all off by default): ``perceptual_net`` picks the
    perceptual loss's network (:data:`~satgen_geo.train.perceptual.PERCEPTUAL_NETS`);
    ``building_oversample`` K draws pairs whose buildings channel is non-empty K times as
    often as the others (epochs keep their length; draws with replacement);
    ``lambda_period2`` weighs :func:`~satgen_geo.train.checkerboard.period2_loss`; ``icnr`` initialises the transposed
    convolutions checkerboard-free (:func:`~satgen_geo.train.checkerboard.icnr_init_`); ``init_generator`` starts the
    generator from a checkpoint's weights (fine-tuning; the discriminator starts fresh).

    Raises
    ------
    ConfigError
        Naming the setting (``param``) and its range.
    """

    data: tuple[str, ...]
    out_dir: str
    name: str = "satgen-unet"
    features: int = 64
    disc_features: int = 64
    epochs: int = 100
    batch_size: int = 8
    lr: float = 2e-4
    lr_min: float = 1e-6
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_gan: float = 1.0
    lambda_l1: float = 10.0
    lambda_perc: float = 50.0
    vgg_weights: str | None = None
    perceptual_net: str = "vgg19"
    lambda_period2: float = 0.0
    building_oversample: float = 1.0
    icnr: bool = False
    init_generator: str | None = None
    input_noise_std: float = 0.02
    jitter: float = 0.1
    max_steps: int | None = None
    checkpoint_every: int = 5
    device: str = "auto"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_run(self)
        check_int(self.features, "features", "generator base features", maximum=MAX_FEATURES)
        check_int(self.disc_features, "disc_features", "discriminator base features", maximum=MAX_FEATURES)
        check_int(self.epochs, "epochs", "number of epochs", maximum=MAX_EPOCHS)
        check_int(self.batch_size, "batch_size", "training batch size", maximum=MAX_BATCH_SIZE)
        if self.max_steps is not None:
            check_int(self.max_steps, "max_steps", "step limit")
        check_int(self.checkpoint_every, "checkpoint_every", "epochs between checkpoints")
        check_int(self.seed, "seed", "random seed", minimum=SEED_RANGE[0], maximum=SEED_RANGE[1])
        _check_optimiser(self)
        for param in ("lambda_gan", "lambda_l1", "lambda_perc", "lambda_period2"):
            check_number(getattr(self, param), param, f"loss weight {param}")
        check_choice(self.perceptual_net, "perceptual_net", "perceptual network", PERCEPTUAL_NETS)
        check_number(self.building_oversample, "building_oversample", "building oversampling", minimum=1.0,
                     maximum=MAX_OVERSAMPLE)
        check_number(self.input_noise_std, "input_noise_std", "input noise", maximum=1.0)
        check_number(self.jitter, "jitter", "colour jitter", maximum=1.0)


def _check_run(config: TrainConfig) -> None:
    """The data folders, the run folder, the model name and the VGG-19 weights path."""
    data = config.data
    if isinstance(data, (str, Path)) or not data or not all(isinstance(d, (str, Path)) and str(d) for d in data):
        raise ConfigError(
            f"no training data ({data!r}); give one or more dataset folders made with 'satgen dataset prepare'",
            param="data",
        )
    object.__setattr__(config, "data", tuple(str(d) for d in data))
    for value, param, what in ((config.out_dir, "output", "run folder"), (config.name, "model_name", "model name")):
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"the {what} must be a non-empty text, got {value!r}", param=param)
    for path, param, what in ((config.vgg_weights, "vgg_weights", "VGG-19 weights"),
                              (config.init_generator, "init_generator", "initial generator")):
        if path is not None and not isinstance(path, (str, Path)):
            raise ConfigError(f"the {what} must be a file path, got {path!r}", param=param)


def _check_optimiser(config: TrainConfig) -> None:
    """Learning rates and Adam betas."""
    lr = check_number(config.lr, "lr", "learning rate", maximum=1.0, open_min=True)
    check_number(config.lr_min, "lr_min", "final learning rate", maximum=lr)
    if not isinstance(config.betas, (tuple, list)) or len(config.betas) != 2:
        raise ConfigError(f"Adam betas must be two numbers, got {config.betas!r}", param="betas")
    for beta in config.betas:
        check_number(beta, "betas", f"each Adam beta of {config.betas!r}", maximum=MAX_BETA)


@dataclass(frozen=True)
class TrainResult:
    """Where the run left its outputs."""

    checkpoint: Path
    exported: Path
    epochs_done: int
    steps_done: int
    val_l1: float | None


class _State:
    """Networks, optimizers, schedulers and random streams of one run."""

    def __init__(self, config: TrainConfig, device: torch.device, total_steps: int, streams: RunStreams) -> None:
        with seeded_init(config.seed):
            generator = UNetGenerator(features=config.features)
            discriminator = PatchDiscriminator(features=config.disc_features)
        if config.icnr:
            icnr_init_(generator)
        if config.init_generator:
            _load_initial(generator, config)
        self.generator, self.discriminator = generator.to(device), discriminator.to(device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=config.betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=config.betas)
        self.sched_g = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_g, total_steps, eta_min=config.lr_min)
        self.sched_d = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_d, total_steps, eta_min=config.lr_min)
        self.streams = streams
        self.epoch, self.step = 0, 0

    def to_dict(self, config: TrainConfig) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "global_step": self.step,
            "generator_state_dict": self.generator.state_dict(),
            "discriminator_state_dict": self.discriminator.state_dict(),
            "optimizer_G_state_dict": self.opt_g.state_dict(), "optimizer_D_state_dict": self.opt_d.state_dict(),
            "scheduler_G_state_dict": self.sched_g.state_dict(), "scheduler_D_state_dict": self.sched_d.state_dict(),
            "config": {
                "input_channels": 2, "output_channels": 3, "generator_features": config.features,
                **{k: v for k, v in asdict(config).items() if k != "extra"},
            },
        }

    def load(self, checkpoint: dict[str, Any]) -> None:
        self.generator.load_state_dict(checkpoint["generator_state_dict"])
        self.discriminator.load_state_dict(checkpoint["discriminator_state_dict"])
        self.opt_g.load_state_dict(checkpoint["optimizer_G_state_dict"])
        self.opt_d.load_state_dict(checkpoint["optimizer_D_state_dict"])
        self.sched_g.load_state_dict(checkpoint["scheduler_G_state_dict"])
        self.sched_d.load_state_dict(checkpoint["scheduler_D_state_dict"])
        self.epoch, self.step = int(checkpoint["epoch"]), int(checkpoint["global_step"])


def train(
    config: TrainConfig,
    resume: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> TrainResult:
    """Train a generator on prepared datasets; write checkpoints, a CSV log and the export.

    Outputs in ``config.out_dir``: ``last.pt`` (resumable, SatGen-CV layout), ``log.csv``
    (one row per epoch; ``val_l1`` is the held-out L1 of
    :func:`satgen_geo.evaluate.evaluate_model`) and ``generator.safetensors`` (our format,
    with its spec). Random draws come from the run's own streams (:mod:`.rng`): the same
    seed gives the same weights, and torch's global random state is left unchanged.
    """
    device = resolve_device(config.device)
    train_pairs, val_pairs = _load_data(config.data)
    perc = _perceptual(config, device)
    out = ensure_dir(config.out_dir)
    streams = RunStreams()
    loader = DataLoader(
        PairDataset(train_pairs, streams.augment, jitter=config.jitter), batch_size=config.batch_size,
        drop_last=len(train_pairs) > config.batch_size, **_sampling(train_pairs, config, streams.data),
    )
    steps_total = config.epochs * len(loader)  # the learning rate anneals over the full schedule
    state = _State(config, device, steps_total, streams)
    if resume:
        state.load(_read_resume(Path(resume), config, device))
        log.info("resumed from %s at epoch %d, step %d", resume, state.epoch, state.step)
    run_model = LoadedModel(state.generator, ModelSpec(features=config.features, name=config.name), device, "run", "-")
    tick = report(progress)
    val_l1 = None
    progress_total = min(steps_total, config.max_steps or steps_total)
    while state.epoch < config.epochs and (config.max_steps is None or state.step < config.max_steps):
        started = time.perf_counter()
        streams.start_epoch(config.seed, state.epoch)
        losses, complete = _run_epoch(state, loader, perc, config, device, tick, progress_total, cancel)
        state.epoch += complete
        val_l1 = validate(run_model, val_pairs) if val_pairs else None
        _append_log(out / "log.csv", state, losses, val_l1, time.perf_counter() - started)
        if complete and state.epoch % config.checkpoint_every == 0:
            _save_checkpoint(out / "last.pt", state, config)
    checkpoint = _save_checkpoint(out / "last.pt", state, config)
    exported = export(state.generator, config, out / "generator.safetensors", state, val_l1)
    return TrainResult(checkpoint, exported, state.epoch, state.step, val_l1)


def _load_data(folders: tuple[str, ...]) -> tuple[list[Pair], list[Pair]]:
    train_pairs = [p for folder in folders for p in read_split(folder, "train")]
    val_pairs = [p for folder in folders for p in read_split(folder, "val")]
    if not train_pairs:
        raise InputFileError(f"no training pairs in {', '.join(folders)} (train/ is empty)", param="data")
    log.info("%d training pairs, %d held-out validation pairs", len(train_pairs), len(val_pairs))
    return train_pairs, val_pairs


def _sampling(pairs: list[Pair], config: TrainConfig, generator: torch.Generator) -> dict[str, Any]:
    """DataLoader arguments: a plain shuffle, or a weighted draw favouring pairs with buildings."""
    weights = [config.building_oversample if has_buildings(p) else 1.0 for p in pairs]
    if config.building_oversample == 1.0 or len(set(weights)) == 1:
        return {"shuffle": True, "generator": generator}
    log.info("oversampling %d pairs with buildings %gx", sum(w > 1 for w in weights), config.building_oversample)
    return {"sampler": WeightedRandomSampler(weights, len(pairs), replacement=True, generator=generator)}


def has_buildings(pair: Pair) -> bool:
    """Whether a pair labels any building (its mask's second channel is non-empty)."""
    return bool(pair.mask[1].any())


def _perceptual(config: TrainConfig, device: torch.device) -> nn.Module | None:
    if config.lambda_perc <= 0:
        return None
    with seeded_init(config.seed):  # the networks draw throw-away weights before loading the real ones
        loss = make_perceptual_loss(config.perceptual_net, config.vgg_weights)
    return loss.to(device)


def _load_initial(generator: UNetGenerator, config: TrainConfig) -> None:
    model = load_model(config.init_generator, "cpu")
    if model.spec.features != config.features:
        raise CheckpointError(
            f"cannot start from {config.init_generator}: it has {model.spec.features} generator features, "
            f"this run {config.features}", param="init_generator",
        )
    generator.load_state_dict(model.generator.state_dict())
    log.info("generator initialised from %s", config.init_generator)


def _read_resume(path: Path, config: TrainConfig, device: torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} does not exist", param="resume")
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    saved = checkpoint.get("config", {}).get("generator_features")
    if saved != config.features:
        raise CheckpointError(
            f"cannot resume: {path} has {saved} generator features, this run {config.features}", param="features"
        )
    return checkpoint


def _run_epoch(
    state: _State, loader: DataLoader, perc: nn.Module | None, config: TrainConfig,
    device: torch.device, tick: ProgressFn, steps_total: int, cancel: CancelFn | None,
) -> tuple[dict[str, float], bool]:
    """One pass over the data (or up to ``max_steps``); returns mean losses and whether it completed."""
    sums = dict.fromkeys(("loss_d", "loss_g_gan", "loss_g_l1", "loss_g_perc", "loss_g_period2"), 0.0)
    batches = 0
    amp = device.type == "cuda"  # mixed precision on CUDA only
    scalers = torch.amp.GradScaler("cuda", enabled=amp), torch.amp.GradScaler("cuda", enabled=amp)
    state.generator.train()
    state.discriminator.train()
    for mask, image in loader:
        check_cancel(cancel)
        noisy = (mask + state.streams.noise_like(mask, config.input_noise_std)).clamp(-1, 1)
        losses = _train_step(state, mask.to(device), noisy.to(device), image.to(device), perc, config, scalers)
        for key, value in zip(sums, losses, strict=True):
            sums[key] += float(value.detach())
        batches += 1
        state.step += 1
        tick(state.step, steps_total, "train")
        if config.max_steps is not None and state.step >= config.max_steps:
            break
    means = {k: v / max(batches, 1) for k, v in sums.items()}
    return means, batches == len(loader)


def _train_step(
    state: _State, mask: Tensor, noisy: Tensor, image: Tensor, perc: nn.Module | None, config: TrainConfig,
    scalers: tuple[torch.amp.GradScaler, torch.amp.GradScaler],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One discriminator and one generator update; returns the five losses."""
    bce = nn.BCEWithLogitsLoss()
    device = mask.device
    with torch.autocast(device.type, enabled=scalers[0].is_enabled()):
        fake = state.generator(noisy, seeds=state.streams.dropout_seeds(len(mask)))
        real_logits = state.discriminator(mask, image)
        fake_logits = state.discriminator(mask, fake.detach())
        real_loss = bce(real_logits, torch.full_like(real_logits, _REAL_LABEL))
        loss_d = 0.5 * (real_loss + bce(fake_logits, torch.zeros_like(fake_logits)))
    _step(state.opt_d, scalers[0], loss_d)

    with torch.autocast(device.type, enabled=scalers[1].is_enabled()):
        fake_logits = state.discriminator(mask, fake)
        loss_gan = bce(fake_logits, torch.ones_like(fake_logits))
        loss_l1 = nn.functional.l1_loss(fake, image)
        loss_perc = perc(fake, image) if perc is not None else torch.zeros((), device=device)
        loss_p2 = period2_loss(fake, image) if config.lambda_period2 > 0 else torch.zeros((), device=device)
        loss_g = (config.lambda_gan * loss_gan + config.lambda_l1 * loss_l1 + config.lambda_perc * loss_perc
                  + config.lambda_period2 * loss_p2)
    _step(state.opt_g, scalers[1], loss_g)
    state.sched_g.step()
    state.sched_d.step()
    return loss_d, loss_gan, loss_l1, loss_perc, loss_p2


def _step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def validate(model: LoadedModel, pairs: list[Pair]) -> float:
    """The held-out L1 of the deterministic generator: :func:`satgen_geo.evaluate.mean_l1` of
    :func:`satgen_geo.evaluate.generate_images`, so exactly the ``l1`` the evaluation reports.
    """
    generated = generate_images(model, pairs, deterministic=True, batch_size=EVAL_BATCH_SIZE)
    return mean_l1(generated, [p.image for p in pairs])


def _append_log(path: Path, state: _State, losses: dict[str, float], val_l1: float | None, seconds: float) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({
            "epoch": state.epoch, "step": state.step, "lr": state.opt_g.param_groups[0]["lr"],
            **{k: f"{v:.5f}" for k, v in losses.items()},
            "val_l1": "" if val_l1 is None else f"{val_l1:.5f}", "seconds": f"{seconds:.1f}",
        })
    log.info("epoch %d step %d: %s val_l1=%s", state.epoch, state.step, {k: round(v, 4) for k, v in losses.items()}, val_l1)


def _save_checkpoint(path: Path, state: _State, config: TrainConfig) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state.to_dict(config), tmp)
    return path


def _options(config: TrainConfig) -> dict[str, Any]:
    """The non-default training options, for the export's provenance."""
    chosen = {
        "perceptual_net": config.perceptual_net if config.lambda_perc > 0 else None,
        "lambda_period2": config.lambda_period2 or None,
        "building_oversample": config.building_oversample if config.building_oversample != 1.0 else None,
        "icnr": config.icnr or None, "init_generator": Path(config.init_generator).name if config.init_generator else None,
    }
    return {k: v for k, v in chosen.items() if v is not None}


def export(generator: UNetGenerator, config: TrainConfig, path: Path, state: _State, val_l1: float | None) -> Path:
    """Write the generator in our safetensors format with its full spec."""
    spec = ModelSpec(
        features=config.features, name=config.name,
        provenance={
            "trained_by": "satgen train", "data": list(config.data), "epochs": state.epoch, "steps": state.step,
            "lambda_gan": config.lambda_gan, "lambda_l1": config.lambda_l1, "lambda_perc": config.lambda_perc,
            **_options(config),
            "val_l1": val_l1, **config.extra,
        },
    )
    return save_generator(generator, spec, path)
