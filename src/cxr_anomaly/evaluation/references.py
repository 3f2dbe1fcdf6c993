"""Reference scores beside the models: the trivial detectors, and fusions of the models.

A study reports, on the split it evaluates, what a trivial detector fitted on the training
images scores (a model that does not beat it has learned nothing about anatomy), and what the
models score together: the mean of their z-scores, each z-normalised on the normal validation
images (:mod:`cxr_anomaly.postprocess.fusion`), with and without the histogram detector, said
openly.
The trivial detectors see the images as stored, whatever a model's intensity standardisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from cxr_anomaly.core.normalise import FUSION_RULE, fuse, zscores_against
from cxr_anomaly.data.datamodule import PreparedData, SplitView
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.postprocess.baselines import (
    BATCH,
    TRIVIAL_DETECTORS,
    HistogramDistance,
    SharpnessDistance,
)
from cxr_anomaly.postprocess.post_processor import PostProcessor

TrivialDetector = HistogramDistance | SharpnessDistance


class _ReferenceMetrics(TypedDict):
    kind: str
    auroc: float
    auroc_ci: list[float]
    ap: float
    ap_ci: list[float]


class ReferenceJson(_ReferenceMetrics, total=False):
    """A reference score's metrics as results files hold them: a trivial detector (with the
    intensities it read) or a fusion (with its members and rule)."""

    intensity: str
    members: str
    rule: str


@dataclass
class ReferenceScore:
    """One reference's per-image scores on the split and its metrics (JSON-ready ``entry``)."""

    entry: ReferenceJson
    scores: np.ndarray


@dataclass
class CalibratedScores:
    """What a fusion needs of one model: its default score's values and its post-processor."""

    name: str
    score_name: str
    values: np.ndarray
    post_processor: PostProcessor | None


def reference_entry(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: list[str],
    kind: str = "trivial",
    n_boot: int = metrics.N_BOOTSTRAP,
    intensity: str | None = None,
    members: str | None = None,
    rule: str | None = None,
) -> ReferenceJson:
    """AUROC/AP with patient-level CIs of a reference score: a trivial detector (and the
    ``intensity`` of the images it read) or a fusion (its ``members`` and ``rule``)."""
    found = metrics.image_metrics(labels, scores, groups, None, n_boot=n_boot)
    entry = ReferenceJson(
        kind=kind,
        auroc=found.auroc,
        auroc_ci=list(found.auroc_ci),
        ap=found.ap,
        ap_ci=list(found.ap_ci),
    )
    if intensity is not None:
        entry["intensity"] = intensity
    if members is not None:
        entry["members"] = members
    if rule is not None:
        entry["rule"] = rule
    return entry


def trivial_scores(
    detector: TrivialDetector, data: PreparedData, view: SplitView
) -> tuple[np.ndarray, np.ndarray | None]:
    """A trivial detector fitted on the training images: its scores on ``view`` and the same
    scores z-normalised on the normal validation images (``None`` without them)."""
    detector.fit(data.view("train").batches(BATCH))
    scores = detector.score(view.batches(BATCH))
    normal_val = data.view("val_normal")
    if len(normal_val) < 2:
        return scores, None
    return scores, zscores_against(scores, detector.score(normal_val.batches(BATCH)))


def _trivial_sources(
    data: PreparedData, view: SplitView
) -> list[tuple[str, PreparedData, SplitView]]:
    """Where the trivial detectors look: the images at their stored intensities (names as they
    are), and, when ``data`` standardises intensities, its own images too (``@<intensity>``)."""
    stored = data.at_stored_intensity(("train", "val_normal", view.name))
    stored_view = stored.view(view.name)
    if stored_view.ids != view.ids:
        raise ValueError(f"the trivial detectors need the whole {view.name} split, in order")
    sources = [("", stored, stored_view)]
    if stored is not data:
        sources.append((f"@{data.config.intensity}", data, view))
    return sources


def reference_scores(
    data: PreparedData,
    view: SplitView,
    models: list[CalibratedScores],
    n_boot: int = metrics.N_BOOTSTRAP,
) -> dict[str, ReferenceScore]:
    """The trivial detectors and, with two calibrated models or more, their fusions
    (``fusion``, and ``fusion+histogram`` with the histogram detector) on ``view``.

    The trivial detectors read the images at their stored intensities, what the sharpness
    fusion reads and what a model must beat; when ``data`` standardises intensities, they are
    also reported on its own images (``histogram@local``, ...).
    """
    references: dict[str, ReferenceScore] = {}
    labels, groups = view.labels, view.patient_ids
    histogram_z = None
    if len(data.view("train")) and len(set(labels.tolist())) == 2:
        for suffix, source, source_view in _trivial_sources(data, view):
            for detector_class in TRIVIAL_DETECTORS:
                detector = detector_class()
                scores, z = trivial_scores(detector, source, source_view)
                if detector.name == HistogramDistance.name and not suffix:
                    histogram_z = z
                entry = reference_entry(
                    labels, scores, groups, n_boot=n_boot, intensity=source.config.intensity
                )
                references[detector.name + suffix] = ReferenceScore(entry, scores)
    calibrated = [m for m in models if m.post_processor is not None]
    if len(calibrated) < 2:
        return references
    members = [
        m.post_processor.zscores(m.values, m.score_name) for m in calibrated if m.post_processor
    ]
    names = [f"{m.name}:{m.score_name}" for m in calibrated]
    fusions = [("fusion", members, names)]
    if histogram_z is not None:
        fusions.append(("fusion+histogram", [*members, histogram_z], [*names, "histogram"]))
    for label, parts, member_names in fusions:
        fused = fuse(parts)
        entry = reference_entry(
            labels,
            fused,
            groups,
            "fusion",
            n_boot=n_boot,
            members=", ".join(member_names),
            rule=FUSION_RULE,
        )
        references[label] = ReferenceScore(entry, fused)
    return references
