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
from torch.utils.data import DataLoader

from satgen_geo._atomic import atomic_path
from satgen_geo.errors import CheckpointError, InputFileError
from satgen_geo.model.checkpoint import save_generator
from satgen_geo.model.discriminator import PatchDiscriminator
from satgen_geo.model.generator import UNetGenerator
from satgen_geo.model.loaded import resolve_device
from satgen_geo.model.spec import ModelSpec
from satgen_geo.progress import CancelFn, ProgressFn, check_cancel, report
from satgen_geo.train.augment import PairDataset, to_unit
from satgen_geo.train.datasets import Pair, read_split
from satgen_geo.train.vgg import PerceptualLoss, perceptual_loss

log = logging.getLogger(__name__)

LOG_FIELDS = ("epoch", "step", "lr", "loss_d", "loss_g_gan", "loss_g_l1", "loss_g_perc", "val_l1", "seconds")
_REAL_LABEL = 0.9  # one-sided label smoothing for the discriminator


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and run options (defaults: the SatGen-CV recipe).

    ``max_steps`` stops early (for smoke tests and time-boxed runs; the learning rate still
    follows the full ``epochs`` schedule, so a resumed run continues it); ``checkpoint_every``
    is in epochs. ``data`` are prepared dataset folders (``satgen dataset prepare``).
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
    input_noise_std: float = 0.02
    jitter: float = 0.1
    max_steps: int | None = None
    checkpoint_every: int = 5
    device: str = "auto"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """Where the run left its outputs."""

    checkpoint: Path
    exported: Path
    epochs_done: int
    steps_done: int
    val_l1: float | None


class _State:
    """Networks, optimizers and schedulers of one run."""

    def __init__(self, config: TrainConfig, device: torch.device, total_steps: int) -> None:
        torch.manual_seed(config.seed)
        self.generator = UNetGenerator(features=config.features).to(device)
        self.discriminator = PatchDiscriminator(features=config.disc_features).to(device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=config.betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=config.betas)
        self.sched_g = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_g, total_steps, eta_min=config.lr_min)
        self.sched_d = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_d, total_steps, eta_min=config.lr_min)
        self.epoch, self.step = 0, 0

    def to_dict(self, config: TrainConfig) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "global_step": self.step,
            "generator_state_dict": self.generator.state_dict(),
            "discriminator_state_dict": self.discriminator.state_dict(),
            "optimizer_G_state_dict": self.opt_g.state_dict(), "optimizer_D_state_dict": self.opt_d.state_dict(),
            "scheduler_G_state_dict": self.sched_g.state_dict(), "scheduler_D_state_dict": self.sched_d.state_dict(),
            "rng_state": torch.get_rng_state(),
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
        torch.set_rng_state(checkpoint["rng_state"])
        self.epoch, self.step = int(checkpoint["epoch"]), int(checkpoint["global_step"])


def train(
    config: TrainConfig,
    resume: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> TrainResult:
    """Train a generator on prepared datasets; write checkpoints, a CSV log and the export.

    Outputs in ``config.out_dir``: ``last.pt`` (resumable, SatGen-CV layout), ``log.csv``
    (one row per epoch) and ``generator.safetensors`` (our format, with its spec).
    """
    device = resolve_device(config.device)
    train_pairs, val_pairs = _load_data(config.data)
    perc = _perceptual(config, device)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(
        PairDataset(train_pairs, jitter=config.jitter), batch_size=config.batch_size, shuffle=True,
        drop_last=len(train_pairs) > config.batch_size,
    )
    steps_total = config.epochs * len(loader)  # the learning rate anneals over the full schedule
    state = _State(config, device, steps_total)
    if resume:
        state.load(_read_resume(Path(resume), config, device))
        log.info("resumed from %s at epoch %d, step %d", resume, state.epoch, state.step)
    tick = report(progress)
    val_l1 = None
    progress_total = min(steps_total, config.max_steps or steps_total)
    while state.epoch < config.epochs and (config.max_steps is None or state.step < config.max_steps):
        started = time.perf_counter()
        losses, complete = _run_epoch(state, loader, perc, config, device, tick, progress_total, cancel)
        state.epoch += complete
        val_l1 = validate(state.generator, val_pairs, device) if val_pairs else None
        _append_log(out / "log.csv", state, losses, val_l1, time.perf_counter() - started)
        if complete and state.epoch % config.checkpoint_every == 0:
            _save_checkpoint(out / "last.pt", state, config)
    checkpoint = _save_checkpoint(out / "last.pt", state, config)
    exported = export(state.generator, config, out / "generator.safetensors", state, val_l1)
    return TrainResult(checkpoint, exported, state.epoch, state.step, val_l1)


def _load_data(folders: tuple[str, ...]) -> tuple[list[Pair], list[Pair]]:
    if not folders:
        raise InputFileError("no training data; give --data DIR (made with 'satgen dataset prepare')")
    train_pairs = [p for folder in folders for p in read_split(folder, "train")]
    val_pairs = [p for folder in folders for p in read_split(folder, "val")]
    if not train_pairs:
        raise InputFileError(f"no training pairs in {', '.join(folders)} (train/ is empty)")
    log.info("%d training pairs, %d held-out validation pairs", len(train_pairs), len(val_pairs))
    return train_pairs, val_pairs


def _perceptual(config: TrainConfig, device: torch.device) -> PerceptualLoss | None:
    if config.lambda_perc <= 0:
        return None
    return perceptual_loss(config.vgg_weights).to(device)


def _read_resume(path: Path, config: TrainConfig, device: torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} does not exist")
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    saved = checkpoint.get("config", {}).get("generator_features")
    if saved != config.features:
        raise CheckpointError(f"cannot resume: {path} has {saved} generator features, this run {config.features}")
    return checkpoint


def _run_epoch(
    state: _State, loader: DataLoader, perc: PerceptualLoss | None, config: TrainConfig,
    device: torch.device, tick: ProgressFn, steps_total: int, cancel: CancelFn | None,
) -> tuple[dict[str, float], bool]:
    """One pass over the data (or up to ``max_steps``); returns mean losses and whether it completed."""
    sums = dict.fromkeys(("loss_d", "loss_g_gan", "loss_g_l1", "loss_g_perc"), 0.0)
    batches = 0
    bce = nn.BCEWithLogitsLoss()
    amp = device.type == "cuda"  # mixed precision on CUDA only
    scaler_d, scaler_g = torch.amp.GradScaler("cuda", enabled=amp), torch.amp.GradScaler("cuda", enabled=amp)
    state.generator.train()
    state.discriminator.train()
    for mask, image in loader:
        check_cancel(cancel)
        mask, image = mask.to(device), image.to(device)
        noisy = (mask + config.input_noise_std * torch.randn_like(mask)).clamp(-1, 1)
        with torch.autocast(device.type, enabled=amp):
            fake = state.generator(noisy)
            real_logits = state.discriminator(mask, image)
            fake_logits = state.discriminator(mask, fake.detach())
            loss_d = 0.5 * (bce(real_logits, torch.full_like(real_logits, _REAL_LABEL)) + bce(fake_logits, torch.zeros_like(fake_logits)))
        _step(state.opt_d, scaler_d, loss_d)

        with torch.autocast(device.type, enabled=amp):
            fake_logits = state.discriminator(mask, fake)
            loss_gan = bce(fake_logits, torch.ones_like(fake_logits))
            loss_l1 = nn.functional.l1_loss(fake, image)
            loss_perc = perc(fake, image) if perc is not None else torch.zeros((), device=device)
            loss_g = config.lambda_gan * loss_gan + config.lambda_l1 * loss_l1 + config.lambda_perc * loss_perc
        _step(state.opt_g, scaler_g, loss_g)

        state.sched_g.step()
        state.sched_d.step()
        for key, value in zip(sums, (loss_d, loss_gan, loss_l1, loss_perc)):
            sums[key] += float(value.detach())
        batches += 1
        state.step += 1
        tick(state.step, steps_total, "train")
        if config.max_steps is not None and state.step >= config.max_steps:
            break
    means = {k: v / max(batches, 1) for k, v in sums.items()}
    return means, batches == len(loader)


def _step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


@torch.no_grad()
def validate(generator: UNetGenerator, pairs: list[Pair], device: torch.device) -> float:
    """Mean L1 (in [0, 1] units) of the deterministic generator on held-out pairs."""
    generator.set_mc_dropout(False)
    total = 0.0
    for pair in pairs:
        mask = to_unit(pair.mask).unsqueeze(0).to(device)
        fake = generator(mask).squeeze(0).cpu()
        real = to_unit(pair.image)
        total += float((fake - real).abs().mean()) / 2
    generator.train()
    return total / len(pairs)


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


def export(generator: UNetGenerator, config: TrainConfig, path: Path, state: _State, val_l1: float | None) -> Path:
    """Write the generator in our safetensors format with its full spec."""
    spec = ModelSpec(
        features=config.features, name=config.name,
        provenance={
            "trained_by": "satgen train", "data": list(config.data), "epochs": state.epoch, "steps": state.step,
            "lambda_gan": config.lambda_gan, "lambda_l1": config.lambda_l1, "lambda_perc": config.lambda_perc,
            "val_l1": val_l1, **config.extra,
        },
    )
    return save_generator(generator, spec, path)
