"""Score a split with a trained model and measure how well the scores separate the classes.

Scoring runs through Lightning's ``Trainer.predict`` so it uses the same devices and
strategies as training; under several processes each image is scored once (the distributed
sampler's padding is removed by index) and rank 0 gathers the results.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist

from cxr_anomaly import atomic, metrics
from cxr_anomaly.data.datamodule import SplitView, make_loader
from cxr_anomaly.models.base import AnomalyModel

log = logging.getLogger(__name__)


@dataclass
class ScoringOptions:
    """How scoring runs (the hardware options mirror training's)."""

    batch_size: int = 64
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    progress: bool = False


@dataclass
class ScoredSplit:
    """Scores of every image of a split, and the anomaly maps of images with known masks."""

    model: str
    split: str
    ids: list[str]
    patient_ids: list[str]
    labels: np.ndarray
    classes: list[str]
    scores: dict[str, np.ndarray]
    default_score: str
    map_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    maps: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1), np.float16))
    seconds: float = 0.0

    @property
    def score(self) -> np.ndarray:
        return self.scores[self.default_score]

    def write_csv(self, path: Path) -> Path:
        """One row per image: id, patient, label, class and every score."""
        names = list(self.scores)
        with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample_id", "patient_id", "label", "class", *names])
            for i, sample_id in enumerate(self.ids):
                row = [sample_id, self.patient_ids[i], int(self.labels[i]), self.classes[i]]
                writer.writerow(row + [f"{self.scores[n][i]:.8g}" for n in names])
        return path


class _ScoringModule(L.LightningModule):
    """Wraps a model for ``Trainer.predict``: returns indices, scores and the maps asked for."""

    def __init__(self, model: AnomalyModel, keep_map: np.ndarray, score_name: str) -> None:
        super().__init__()
        self.model = model
        self.keep_map = torch.from_numpy(keep_map)
        self.score_name = score_name

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        images, index = batch
        result = self.model.infer(images)
        keep = self.keep_map[index.cpu()]
        return {
            "index": index.cpu(),
            "scores": {k: v.cpu() for k, v in result.scores.items()},
            "maps": result.maps[self.score_name][keep.to(images.device)].cpu().half(),
            "map_index": index.cpu()[keep],
        }


def gather_outputs(outputs: list[Any]) -> list[Any]:
    """Every process's ``Trainer.predict`` outputs, on every process (one all-gather)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return outputs
    everything: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everything, outputs)
    return [item for part in everything for item in (part or [])]


def scoring_trainer(options: ScoringOptions) -> L.Trainer:
    """A Trainer for ``predict`` on the devices of ``options`` (models set their own precision)."""
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


def score_split(
    model: AnomalyModel,
    view: SplitView,
    options: ScoringOptions | None = None,
    keep_maps: bool = True,
) -> ScoredSplit:
    """Score every image of ``view``; keep maps of images whose mask is known.

    Returns the same result on every rank (gathered), in the view's order, with each image
    exactly once.
    """
    options = options or ScoringOptions()
    n = len(view)
    if n == 0:
        raise ValueError(f"the {view.name} split holds no prepared image to score")
    keep_map = view.mask_known() if keep_maps else np.zeros(n, bool)
    module = _ScoringModule(model, keep_map, model.config.default_score)
    trainer = scoring_trainer(options)
    start = time.perf_counter()
    outputs = trainer.predict(module, dataloaders=make_loader(view, options.batch_size)) or []
    seconds = time.perf_counter() - start
    parts = gather_outputs([o for o in outputs if isinstance(o, dict)])
    index = torch.cat([p["index"] for p in parts]).numpy()
    names = list(parts[0]["scores"]) if parts else list(model.score_names())
    order, first = np.unique(index, return_index=True)
    if len(order) != n:
        raise RuntimeError(f"scored {len(order)} of {n} images")
    scores = {
        name: torch.cat([p["scores"][name] for p in parts]).numpy()[first].astype(np.float64)
        for name in names
    }
    map_index = torch.cat([p["map_index"] for p in parts]).numpy() if parts else np.zeros(0)
    maps_all = torch.cat([p["maps"] for p in parts]).numpy() if parts else np.zeros((0, 1, 1))
    map_order, map_first = np.unique(map_index, return_index=True)
    maps = maps_all[map_first][:, 0] if len(map_first) else np.zeros((0, 1, 1), np.float16)
    return ScoredSplit(
        model=model.registry_name,
        split=view.name,
        ids=view.ids,
        patient_ids=view.patient_ids,
        labels=view.labels,
        classes=view.classes,
        scores=scores,
        default_score=model.config.default_score,
        map_indices=map_order.astype(np.int64),
        maps=maps,
        seconds=seconds,
    )


@dataclass
class Evaluation:
    """Image-level and (where masks exist) pixel-level metrics of one model on one split."""

    model: str
    split: str
    score_name: str
    image: metrics.ImageMetrics
    score_variants: dict[str, dict[str, float]]
    pixel: metrics.PixelMetrics | None
    scoring_seconds: float
    n_images: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "split": self.split,
            "score": self.score_name,
            "image": self.image.to_dict(),
            "score_variants": self.score_variants,
            "pixel": None if self.pixel is None else self.pixel.to_dict(),
            "scoring_seconds": round(self.scoring_seconds, 3),
            "images_per_second": round(self.n_images / max(self.scoring_seconds, 1e-9), 2),
            "n_images": self.n_images,
        }


def evaluate_scored(
    scored: ScoredSplit, masks: np.ndarray | None, n_boot: int = 1000, seed: int = 0
) -> Evaluation:
    """Metrics of ``scored``; ``masks`` (M, S, S) align with ``scored.map_indices``."""
    image = metrics.image_metrics(
        scored.labels, scored.score, scored.patient_ids, scored.classes, n_boot=n_boot, seed=seed
    )
    variants = {
        name: {
            "auroc": metrics.auroc(scored.labels, values),
            "ap": metrics.average_precision(scored.labels, values),
        }
        for name, values in scored.scores.items()
    }
    pixel = None
    if masks is not None and len(masks) and masks.any():
        pixel = metrics.pixel_metrics(scored.maps.astype(np.float32), masks)
    return Evaluation(
        model=scored.model,
        split=scored.split,
        score_name=scored.default_score,
        image=image,
        score_variants=variants,
        pixel=pixel,
        scoring_seconds=scored.seconds,
        n_images=len(scored.ids),
    )
