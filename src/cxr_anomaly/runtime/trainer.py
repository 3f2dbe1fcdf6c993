"""Builds every Lightning Trainer: for training (devices, strategy, precision, callbacks and
loggers) and for inference (:func:`build_predict_trainer`)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from cxr_anomaly.core import atomic
from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.core.hardware import on_gpu, resolve_precision

log = logging.getLogger(__name__)
CallbackT = TypeVar("CallbackT", bound=Callback)


def is_global_zero() -> bool:
    """Whether this process is the first of its job: the only one that writes files.

    Asks the process group when one exists, else the launcher's environment (torchrun's
    ``RANK``, SLURM's ``SLURM_PROCID``, Lightning's ``NODE_RANK``/``LOCAL_RANK``), so that a
    process re-launched for distributed training knows its place before the group is formed.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for the training noise of one epoch on one rank."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


class EpochSeed(Callback):
    """At each epoch start, reseed the model's training noise from (seed, epoch, rank).

    The noise (latent samples, dropout, diffusion timesteps, augmentation) is drawn from the
    model's own generators (``AnomalyModel.reseed_noise``), never from torch's global one, and
    depends only on the epoch: a run resumed from an epoch checkpoint continues exactly as an
    uninterrupted one, so the generators' states need no place in the checkpoint.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed = epoch_seed(self.seed, trainer.current_epoch, trainer.global_rank)
        reseed = getattr(pl_module, "reseed_noise", None)
        if reseed is None:
            raise TypeError(f"{type(pl_module).__name__} draws no seeded training noise")
        reseed(seed)


class BestWeights(Callback):
    """Model choice without labels: keep the weights of the epoch with the lowest normal
    validation loss and put them back when training ends.

    The kept weights live in one file beside the checkpoints (``best-epoch<N>.pt`` in
    ``directory``), written when an epoch improves, not in memory and not in every epoch
    checkpoint: the checkpoints carry only the best epoch and its loss, so a resumed run still
    chooses among all its epochs. The previous best's file stays until the next improvement, so
    whichever checkpoint a killed run resumes from finds its file. The weights are restored at
    ``on_train_end``, before the models fit their statistics of normal images
    (``AnomalyModel.fit_normal_images``) and before score calibration.
    """

    def __init__(self, directory: Path, monitor: str = "val_loss") -> None:
        self.directory = Path(directory)
        self.monitor = monitor
        self.best_loss = math.inf
        self.best_epoch = -1

    def path(self, epoch: int) -> Path:
        """The weights file of ``epoch``."""
        return self.directory / f"best-epoch{epoch}.pt"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or float(value) >= self.best_loss:
            return
        previous = self.best_epoch
        self.best_loss, self.best_epoch = float(value), trainer.current_epoch
        if trainer.local_rank != 0:  # every process holds the same weights; one per node writes
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(self.path(self.best_epoch)) as tmp:
            torch.save(pl_module.state_dict(), tmp)
        for old in self.directory.glob("best-epoch*.pt"):
            if old.name not in (self.path(self.best_epoch).name, self.path(previous).name):
                old.unlink(missing_ok=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.best_epoch < 0:
            return
        trainer.strategy.barrier("best-weights")
        weights = torch.load(self.path(self.best_epoch), map_location="cpu", weights_only=True)
        pl_module.load_state_dict(weights)
        log.info(
            "restored the weights of epoch %d (%s %.5f)",
            self.best_epoch,
            self.monitor,
            self.best_loss,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_loss = state_dict["best_loss"]
        self.best_epoch = state_dict["best_epoch"]
        if state_dict.get("weights") is not None and not self.path(self.best_epoch).exists():
            # A checkpoint from before the weights moved to their own file carries them.
            self.directory.mkdir(parents=True, exist_ok=True)
            with atomic.atomic_path(self.path(self.best_epoch)) as tmp:
                torch.save(state_dict["weights"], tmp)


@dataclass
class ScoringOptions:
    """How inference runs (the hardware options mirror training's)."""

    batch_size: int = 64
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    progress: bool = False


#: Where Lightning announces the hardware it found and its tips, at INFO level.
LIGHTNING_INFO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


@contextlib.contextmanager
def _lightning_info_silenced() -> Iterator[None]:
    """Lightning's INFO announcements held back (their levels restored afterwards)."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_INFO_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def build_predict_trainer(options: ScoringOptions) -> L.Trainer:
    """A Trainer for inference on the devices of ``options`` (models set their own precision).

    Without ``options.progress`` (the Python API's default) it is quiet: Lightning's hardware
    announcement and tips are held back, so ``model.predict(...)`` prints nothing."""
    quiet = _lightning_info_silenced() if not options.progress else contextlib.nullcontext()
    with quiet:
        return L.Trainer(
            accelerator=options.accelerator,
            devices=options.devices,
            num_nodes=options.num_nodes,
            strategy=options.strategy,
            precision="32-true",
            logger=False,
            enable_progress_bar=options.progress,
            enable_model_summary=False,
            enable_checkpointing=False,
        )


def find_callback(trainer: L.Trainer, kind: type[CallbackT]) -> CallbackT | None:
    """The trainer's first callback of type ``kind``, if any."""
    callbacks = getattr(trainer, "callbacks", [])  # set at run time, untyped in Lightning
    return next((c for c in callbacks if isinstance(c, kind)), None)


def _loggers(run_dir: Path, resume: bool) -> list[Logger]:
    """CSV losses in ``logs/metrics.csv``; a resumed run appends a ``logs/resume-N/`` folder
    instead of overwriting the interrupted run's log."""
    version = ""
    if resume:
        attempt = 1
        while (run_dir / "logs" / f"resume-{attempt}").exists():
            attempt += 1
        version = f"resume-{attempt}"
    loggers: list[Logger] = [CSVLogger(run_dir, name="logs", version=version)]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(run_dir / "logs", name="tensorboard", version=version))
    return loggers


def build_trainer(
    train: TrainConfig,
    run_dir: Path,
    has_validation: bool,
    progress: bool = True,
    extra_callbacks: list[Callback] | None = None,
    resume: bool = False,
) -> L.Trainer:
    """A Trainer for one run: checkpoints for resume under ``run_dir/checkpoints``, CSV logs
    (and TensorBoard when installed) under ``run_dir/logs``; a ``Timer`` that measures the
    training time and enforces ``train.max_time``.
    """
    callbacks: list[Callback] = [
        Timer(duration=train.max_time),
        EpochSeed(train.seed),
        # One checkpoint, ``last.ckpt``, rewritten after every epoch. (``save_top_k=0`` with
        # ``save_last=True`` saves nothing until training ends: Lightning writes ``last`` only
        # beside a top-k save.)
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="last",
            save_top_k=1,
            every_n_epochs=1,
            enable_version_counter=False,
        ),
    ]
    if has_validation and train.early_stopping_patience is not None:
        callbacks.append(
            EarlyStopping(monitor="val_loss", patience=train.early_stopping_patience, mode="min")
        )
    if has_validation and train.restore_best:
        callbacks.append(BestWeights(run_dir / "checkpoints", "val_loss"))
    callbacks.extend(extra_callbacks or [])
    precision = resolve_precision(train.precision, train.accelerator)
    log.info("precision %s", precision)
    kwargs: dict[str, Any] = {}
    if not has_validation:
        kwargs["limit_val_batches"] = 0
    return L.Trainer(
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy=train.strategy,
        precision=precision,  # type: ignore[arg-type]
        max_epochs=train.max_epochs,
        callbacks=callbacks,
        logger=_loggers(run_dir, resume),
        log_every_n_steps=train.log_every_n_steps,
        enable_progress_bar=progress,
        enable_model_summary=False,
        # SyncBatchNorm needs GPUs; on CPUs the models average BatchNorm statistics themselves.
        sync_batchnorm=train.sync_batchnorm and on_gpu(train.accelerator),
        deterministic=False,
        default_root_dir=run_dir,
        **kwargs,
    )
