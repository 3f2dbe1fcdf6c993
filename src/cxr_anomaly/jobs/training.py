"""Train one model on the normal images of one dataset and save it as a run folder.

A run folder holds ``config.yaml`` (the full run config), ``splits.csv`` (the split manifest),
``checkpoints/`` (Lightning checkpoints for ``--resume``), ``logs/`` (CSV losses; TensorBoard
when installed) and, once training ends, ``model.safetensors`` + ``model.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, Timer

from cxr_anomaly.core import atomic
from cxr_anomaly.core.config import (
    ConfigError,
    RunConfig,
    Settings,
    load_yaml,
    to_yaml,
)
from cxr_anomaly.core.hardware import resolve_precision
from cxr_anomaly.data.datamodule import CxrDataModule, PreparedData
from cxr_anomaly.jobs.calibrate import post_processor_of_run
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.models.registry import build_model
from cxr_anomaly.runtime.checkpoint import (
    META_FILE,
    ModelMetadata,
    ProtocolRecord,
    TrainingRecord,
    load_weights,
    read_metadata,
    save_model,
)
from cxr_anomaly.runtime.trainer import (
    BestWeights,
    build_trainer,
    find_callback,
    is_global_zero,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
SPLITS_FILE = "splits.csv"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass
class TrainResult:
    """A finished training run."""

    run_dir: Path
    model: AnomalyModel
    data: PreparedData
    seconds: float
    epochs: int
    steps: int


def _check_run_dir(config: RunConfig, run_dir: Path, resume: bool) -> None:
    saved = run_dir / CONFIG_FILE
    if resume:
        if not saved.is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no {CONFIG_FILE})")
        if RunConfig.from_dict(load_yaml(saved)).to_dict() != config.to_dict():
            raise ConfigError(
                f"{run_dir}: --resume needs the same settings as the interrupted run (see {saved})"
            )
    elif saved.exists():
        raise ConfigError(f"{run_dir} already holds a run: use --resume or another --out")


def train(
    config: RunConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
) -> TrainResult:
    """Train ``config.model`` and write the run folder ``run_dir``.

    Args:
        config: model, data and training settings.
        run_dir: the run folder (created).
        resume: continue an interrupted run in ``run_dir`` from its last epoch checkpoint.
        progress: show progress bars.
        callbacks: extra Lightning callbacks.
    """
    run_dir = Path(run_dir)
    data = PreparedData(config.data)
    if is_global_zero():  # processes launched for DDP find the folder already made
        _check_run_dir(config, run_dir, resume)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(run_dir / CONFIG_FILE, to_yaml(config))
        data.splits.write_csv(run_dir / SPLITS_FILE)

    L.seed_everything(config.train.seed, workers=True, verbose=False)
    model = build_model(config.model, config.model_params, config.train)
    datamodule = CxrDataModule(
        data,
        config.train.batch_size,
        seed=config.train.seed,
        num_workers=config.train.num_workers,
        progress=progress,
    )
    has_validation = len(data.splits.samples("val_normal")) > 0
    checkpoint = run_dir / LAST_CHECKPOINT
    ckpt_path = str(checkpoint) if resume and checkpoint.is_file() else None
    trainer = build_trainer(
        config.train,
        run_dir,
        has_validation,
        progress,
        callbacks or [],
        resume=ckpt_path is not None,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    train_view = data.view("train")
    # Every process fits on the whole training split (not its shard), so all ranks agree.
    model.fit_normal_images(train_view.batches(config.train.batch_size), len(train_view))
    model.fit_pixel_statistics(train_view.batches(config.train.batch_size))
    timer = find_callback(trainer, Timer)
    elapsed = timer.time_elapsed("train") if timer is not None else 0.0
    seconds = elapsed or time.perf_counter() - start
    result = TrainResult(
        run_dir=run_dir,
        model=model,
        data=data,
        seconds=seconds,
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
    )
    if trainer.is_global_zero:
        metadata = _metadata(config, result, trainer)
        metadata.post_processor = post_processor_of_run(model, data, config.train)
        save_model(model, run_dir, metadata)
    return result


def refit_normal(run_dir: Path, out_dir: Path, model_overrides: Settings) -> Path:
    """A trained run with other scoring settings, without training again.

    The network's weights are kept; ``model_overrides`` change the model parameters that only
    the normal statistics and scores depend on (e.g. AnatPaste's ``dense_stages`` and
    ``default_score``). The normal statistics are fitted again on the run's own training
    images and the scores calibrated again, into a new run folder ``out_dir``.

    Raises:
        ConfigError: an override would need weights the run does not have, or ``out_dir``
            already holds a model.
    """
    if (out_dir / META_FILE).exists():
        raise ConfigError(f"{out_dir} already holds a trained model; choose another folder")
    metadata = read_metadata(run_dir)
    trained = load_weights(run_dir, metadata)
    params = {**metadata.model_params, **model_overrides}
    train_config = metadata.train
    model = build_model(metadata.model, params, train_config)
    problem = f"{', '.join(sorted(model_overrides))}: the run's network does not fit these settings"
    try:
        # Normal statistics of another shape (another fusion, say) are fitted again below.
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        weights = {
            k: v
            for k, v in trained.state_dict().items()
            if not (_is_statistic(model, k) and k in shapes and shapes[k] != v.shape)
        }
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # a weight of another shape
        raise ConfigError(f"{problem}: {err}") from err
    if unexpected or any(not _is_statistic(model, key) for key in missing):
        raise ConfigError(f"{problem} (missing {sorted(missing)}, unexpected {sorted(unexpected)})")
    data = PreparedData(metadata.data)
    data.prepare(("train", "val_normal"))
    train_view = data.view("train")
    model.eval()
    model.fit_normal_images(train_view.batches(train_config.batch_size), len(train_view))
    model.fit_pixel_statistics(train_view.batches(train_config.batch_size))
    metadata.model_params = asdict(model.config)
    metadata.training = replace(metadata.training, refit_from=str(run_dir))
    metadata.post_processor = post_processor_of_run(model, data, train_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, out_dir, metadata)
    return out_dir


def _is_statistic(model: AnomalyModel, key: str) -> bool:
    """Whether ``key`` of the state dict is a buffer (fitted normal statistics), not a weight."""
    return key in dict(model.named_buffers())


def _metadata(config: RunConfig, result: TrainResult, trainer: L.Trainer) -> ModelMetadata:
    protocol = result.data.protocol
    best = find_callback(trainer, BestWeights)
    kept_best = best is not None and best.best_epoch >= 0
    return ModelMetadata(
        model=config.model,
        model_params=asdict(result.model.config),
        train=config.train,
        data=config.data,
        protocol=ProtocolRecord(protocol.name, protocol.description),
        training=TrainingRecord(
            epochs=result.epochs,
            steps=result.steps,
            seconds=round(result.seconds, 2),
            precision=resolve_precision(config.train.precision, config.train.accelerator),
            devices=trainer.num_devices,
            num_nodes=trainer.num_nodes,
            n_train_images=len(result.data.splits.samples("train")),
            best_epoch=best.best_epoch if best is not None and kept_best else None,
            best_val_loss=round(best.best_loss, 6) if best is not None and kept_best else None,
        ),
    )
