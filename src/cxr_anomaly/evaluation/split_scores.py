"""Score a split with a trained model and measure how well the scores separate the classes.

Scoring goes through :func:`cxr_anomaly.runtime.inference.infer_loader` (the devices and strategies
of
training, each image once); the metrics come from :mod:`cxr_anomaly.evaluation.metrics`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np

from cxr_anomaly.core import atomic
from cxr_anomaly.data.datamodule import SplitView, make_loader
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.evaluation.metrics.pixel import PixelMetricsJson
from cxr_anomaly.evaluation.metrics.summary import ImageMetricsJson
from cxr_anomaly.evaluation.pixel_tally import ImagePixels, PixelTally, SplitPixels
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.runtime.inference import infer_loader
from cxr_anomaly.runtime.trainer import ScoringOptions


class EvaluationJson(TypedDict):
    """:class:`Evaluation` as results files hold it."""

    model: str
    split: str
    score: str
    image: ImageMetricsJson
    score_variants: dict[str, dict[str, float]]
    pixel: PixelMetricsJson | None
    scoring_seconds: float
    images_per_second: float
    n_images: int


@dataclass
class ScoredSplit:
    """Scores of every image of a split, and what the pixel metrics keep of the maps of the
    images with known masks (:mod:`cxr_anomaly.evaluation.pixel_tally`)."""

    model: str
    split: str
    ids: list[str]
    patient_ids: list[str]
    labels: np.ndarray
    classes: list[str]
    scores: dict[str, np.ndarray]
    default_score: str
    pixels: list[ImagePixels] = field(default_factory=list)
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


def score_split(
    model: AnomalyModel,
    view: SplitView,
    options: ScoringOptions | None = None,
    keep_maps: bool = True,
) -> ScoredSplit:
    """Score every image of ``view``; with ``keep_maps``, keep what the pixel metrics need of
    the maps of images whose mask is known (batch by batch: a bounded sample of pixels).

    Returns the same result on every rank (gathered), in the view's order, with each image
    exactly once.
    """
    options = options or ScoringOptions()
    if len(view) == 0:
        raise ValueError(f"the {view.name} split holds no prepared image to score")
    keep = view.mask_known() if keep_maps else np.zeros(len(view), bool)
    loader = make_loader(view, options.batch_size)
    reducer = SplitPixels(view) if keep.any() else None
    inferred = infer_loader(model, loader, options, keep, reduce_maps=reducer)
    return ScoredSplit(
        model=model.name,
        split=view.name,
        ids=view.ids,
        patient_ids=view.patient_ids,
        labels=view.labels,
        classes=view.classes,
        scores=inferred.scores,
        default_score=model.config.default_score,
        pixels=inferred.reduced,
        seconds=inferred.seconds,
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

    def to_dict(self) -> EvaluationJson:
        return EvaluationJson(
            model=self.model,
            split=self.split,
            score=self.score_name,
            image=self.image.to_dict(),
            score_variants=self.score_variants,
            pixel=None if self.pixel is None else self.pixel.to_dict(),
            scoring_seconds=round(self.scoring_seconds, 3),
            images_per_second=round(self.n_images / max(self.scoring_seconds, 1e-9), 2),
            n_images=self.n_images,
        )


def evaluate_scored(
    scored: ScoredSplit, n_boot: int = metrics.N_BOOTSTRAP, seed: int = 0
) -> Evaluation:
    """Image metrics of ``scored``, and pixel metrics where it kept pixels with masks."""
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
    pixel = PixelTally.metrics(scored.pixels)
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
