"""One evaluation study on disk: ``results.json``, the per-image score CSVs and the figures
(:mod:`cxr_anomaly.reporting.html` lays them out as ``report.html``).

Used by ``evaluate`` (one model) and ``benchmark``/``demo`` (several models on one split). The
writer takes scores and example arrays, never the data they came from.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np

from cxr_anomaly.core import atomic
from cxr_anomaly.evaluation.references import ReferenceJson, ReferenceScore
from cxr_anomaly.evaluation.split_scores import Evaluation, EvaluationJson, ScoredSplit
from cxr_anomaly.postprocess.post_processor import PostProcessor
from cxr_anomaly.reporting import viz
from cxr_anomaly.reporting.examples import Examples
from cxr_anomaly.runtime.checkpoint import ModelMetadata, TrainingJson, library_versions

RESULTS_FILE = "results.json"
FIGURES = {"roc": "roc.png", "histograms": "histograms.png", "grid": "comparison_grid.png"}
#: Drawn only where the examples have files (not for the phantoms): maps over the radiographs.
ORIGINALS_FIGURE = "full_resolution.png"


#: Per split, per image class: the number of patients and of images (``Splits.summary``).
SplitSummary = dict[str, dict[str, dict[str, int]]]


class ProtocolJson(TypedDict):
    name: str
    description: str


class ModelJson(EvaluationJson):
    """One model's entry in ``results.json``: its evaluation, training and settings."""

    training: TrainingJson
    config: dict[str, object]
    run_dir: str


class ResultsJson(TypedDict):
    """``results.json``: what a study measured, on what, and how."""

    title: str
    data: str
    protocol: ProtocolJson
    split: str
    split_summary: SplitSummary
    image_size: int
    preset: str | None
    command: str
    wall_seconds: float | None
    notes: list[str]
    models: dict[str, ModelJson]
    references: dict[str, ReferenceJson]
    figures: dict[str, str]
    machine: dict[str, str | int | None]
    versions: dict[str, str]


@dataclass
class ModelResult:
    """Everything the study knows about one model."""

    evaluation: Evaluation
    scored: ScoredSplit
    metadata: ModelMetadata
    run_dir: Path

    @property
    def name(self) -> str:
        return self.metadata.model

    @property
    def post_processor(self) -> PostProcessor | None:
        return self.metadata.post_processor


@dataclass
class StudyContext:
    """What the numbers are about: data, protocol, split, and how they were produced."""

    title: str
    data: str
    data_label: str
    protocol: str
    protocol_description: str
    split: str
    split_summary: SplitSummary
    image_size: int
    command: str
    preset: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Wall-clock seconds of the whole job up to writing its results (data, training, scoring).
    wall_seconds: float | None = None


def machine_description() -> dict[str, str | int | None]:
    """The machine the numbers were measured on."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _model_json(result: ModelResult) -> ModelJson:
    metadata = result.metadata
    return ModelJson(
        **result.evaluation.to_dict(),
        training=metadata.training.to_json(),
        config={
            "model_params": metadata.model_params,
            "train": asdict(metadata.train),
            "protocol": asdict(metadata.protocol),
        },
        run_dir=str(result.run_dir),
    )


def _results_json(
    context: StudyContext, results: list[ModelResult], references: dict[str, ReferenceJson]
) -> ResultsJson:
    return ResultsJson(
        title=context.title,
        data=context.data,
        protocol=ProtocolJson(name=context.protocol, description=context.protocol_description),
        split=context.split,
        split_summary=context.split_summary,
        image_size=context.image_size,
        preset=context.preset,
        command=context.command,
        wall_seconds=context.wall_seconds,
        notes=context.notes,
        models={r.name: _model_json(r) for r in results},
        references=references,
        figures=dict(FIGURES),
        machine=machine_description(),
        versions=library_versions(),
    )


def _map_floor(result: ModelResult, examples: Examples) -> float:
    """Where a model's heatmap starts to be red: the calibrated median normal pixel, or for a
    run without normal validation images, the median of the shown maps' nonzero pixels."""
    if result.post_processor is not None:
        return result.post_processor.map_floor
    shown = np.asarray(examples.maps[result.name])
    return float(np.median(shown[shown > 0])) if (shown > 0).any() else 0.0


def _write_reference_scores(
    path: Path, scored: ScoredSplit, references: dict[str, ReferenceScore]
) -> None:
    """Per-image scores of the trivial detectors and the fusions, beside the models' CSVs."""
    names = list(references)
    with atomic.atomic_open(path, "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "patient_id", "label", "class", *names])
        for i, sample_id in enumerate(scored.ids):
            identity = [sample_id, scored.patient_ids[i], int(scored.labels[i]), scored.classes[i]]
            writer.writerow(identity + [f"{references[n].scores[i]:.8g}" for n in names])


def curve_label(name: str, entry: ReferenceJson) -> str:
    """How a reference is named in figures and tables: fusions as they are, the trivial
    detectors with "(trivial)"."""
    return name if entry.get("kind") == "fusion" else f"{name} (trivial)"


def write_study(
    out_dir: Path,
    context: StudyContext,
    results: list[ModelResult],
    examples: Examples | None,
    references: dict[str, ReferenceScore] | None = None,
) -> ResultsJson:
    """Write the score CSVs, the figures and ``results.json`` under ``out_dir``; return the JSON
    (:func:`cxr_anomaly.reporting.html.write_study_report` lays it out as ``report.html``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = out_dir / "figures"
    references = references or {}
    for result in results:
        result.scored.write_csv(out_dir / "scores" / f"{result.name}.csv")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {
        r.name: (r.scored.labels, r.scored.score) for r in results
    }
    if results:
        labels = results[0].scored.labels
        for name, reference in references.items():
            curves[curve_label(name, reference.entry)] = (labels, reference.scores)
    viz.plot_roc(
        curves, figures / FIGURES["roc"], title=f"ROC: {context.data_label}, {context.split} split"
    )
    viz.score_histograms(
        {r.name: (r.scored.labels, r.scored.score) for r in results},
        figures / FIGURES["histograms"],
    )
    if examples is not None:
        viz.comparison_grid(
            examples.images,
            examples.reconstructions,
            examples.maps,
            figures / FIGURES["grid"],
            masks=examples.masks,
            titles=examples.titles,
            vmin={r.name: _map_floor(r, examples) for r in results},
            vmax={
                r.name: r.post_processor.map_scale
                for r in results
                if r.post_processor is not None and r.post_processor.map_scale
            },
        )
    if examples is not None and examples.overlays and any(examples.overlays.values()):
        viz.panel_grid(
            examples.original_rows(),
            ["radiograph", *examples.overlays],
            figures / ORIGINALS_FIGURE,
            row_titles=[
                t for t, o in zip(examples.titles, examples.originals, strict=True) if o is not None
            ],
        )
    if references and results:
        _write_reference_scores(
            out_dir / "scores" / "references.csv", results[0].scored, references
        )
    entries = {name: reference.entry for name, reference in references.items()}
    results_json = _results_json(context, results, entries)
    atomic.write_text(out_dir / RESULTS_FILE, json.dumps(results_json, indent=2, default=float))
    return results_json
