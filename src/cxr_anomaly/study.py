"""One evaluation study on disk: ``results.json``, the figures and a self-contained report.

Used by ``evaluate`` (one model) and ``benchmark``/``demo`` (several models on one test split).
"""

from __future__ import annotations

import csv
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cxr_anomaly import atomic, metrics, report, viz
from cxr_anomaly.checkpoint import library_versions
from cxr_anomaly.data.datamodule import SplitView
from cxr_anomaly.data.images import SUPPORTED_SUFFIXES
from cxr_anomaly.evaluation import Evaluation, ScoredSplit

RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
FIGURES = {"roc": "roc.png", "histograms": "histograms.png", "grid": "comparison_grid.png"}


@dataclass
class Examples:
    """A few test images shown in the comparison grid, with each model's output on them."""

    indices: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    titles: list[str]
    reconstructions: dict[str, np.ndarray | None] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def select_examples(view: SplitView, count: int = 4, seed: int = 0) -> Examples:
    """One normal image and abnormal ones of different classes (masked ones first), by seed.

    The choice never looks at scores, so the figure is not cherry-picked.
    """
    rng = np.random.default_rng(seed)
    labels, classes = view.labels, view.classes
    known = view.mask_known()
    normal = np.flatnonzero(labels == 0)
    chosen: list[int] = [int(rng.choice(normal))] if len(normal) else []
    abnormal_classes = sorted({c for c, y in zip(classes, labels, strict=True) if y == 1})
    rng.shuffle(abnormal_classes)
    for cls in abnormal_classes:
        if len(chosen) >= count:
            break
        members = np.array([i for i, c in enumerate(classes) if c == cls and labels[i] == 1])
        masked = members[known[members]]
        chosen.append(int(rng.choice(masked if len(masked) else members)))
    indices = np.array(chosen, dtype=np.int64)
    return Examples(
        indices=indices,
        images=view.images(indices)[:, 0],
        masks=view.masks(indices),
        titles=[f"{classes[i]}\n{short_id(view.ids[i])}" for i in indices],
    )


def short_id(image_id: str, limit: int = 24) -> str:
    """An image id short enough for a figure label: its file stem, middle elided past ``limit``.

    Example:
        >>> short_id("test-dev/NORMAL/NORMAL2-IM-0337-0001.jpeg")
        'NORMAL2-IM-0337-0001'
        >>> short_id("a-very-long-file-name-from-a-hospital-export.dcm")
        'a-very-long…pital-export'
    """
    stem = PurePosixPath(image_id.replace("\\", "/")).name
    if PurePosixPath(stem).suffix.lower() in SUPPORTED_SUFFIXES:
        stem = PurePosixPath(stem).stem
    if len(stem) <= limit:
        return stem
    head = (limit - 1) // 2
    return f"{stem[:head]}…{stem[len(stem) - (limit - 1 - head) :]}"


@dataclass
class ModelResult:
    """Everything the study knows about one model."""

    name: str
    evaluation: Evaluation
    scored: ScoredSplit
    training: dict[str, Any]
    config: dict[str, Any]
    run_dir: Path
    calibration: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyContext:
    """What the numbers are about: data, protocol, split, and how they were produced."""

    title: str
    data: str
    data_label: str
    protocol: str
    protocol_description: str
    split: str
    split_summary: dict[str, Any]
    image_size: int
    command: str
    preset: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Wall-clock seconds of the whole job up to writing its results (data, training, scoring).
    wall_seconds: float | None = None


def machine_description() -> dict[str, Any]:
    """The machine the numbers were measured on."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _results_json(
    context: StudyContext, results: list[ModelResult], baselines: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return {
        "title": context.title,
        "data": context.data,
        "protocol": {"name": context.protocol, "description": context.protocol_description},
        "split": context.split,
        "split_summary": context.split_summary,
        "image_size": context.image_size,
        "preset": context.preset,
        "command": context.command,
        "wall_seconds": context.wall_seconds,
        "notes": context.notes,
        "models": {
            r.name: {
                **r.evaluation.to_dict(),
                "training": r.training,
                "config": r.config,
                "run_dir": str(r.run_dir),
            }
            for r in results
        },
        "baselines": baselines,
        "figures": dict(FIGURES),
        "machine": machine_description(),
        "versions": library_versions(),
    }


def metrics_rows(results_json: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model, trivial detector and fusion: AUROC, AP with CIs, sensitivities."""
    rows = []
    for name, entry in results_json["models"].items():
        image = entry["image"]
        rows.append(
            {
                "model": name,
                "score": entry["score"],
                "AUROC [95% CI]": (image["auroc"], tuple(image["auroc_ci"])),
                "AP [95% CI]": (image["ap"], tuple(image["ap_ci"])),
                "sens@90%spec": image["sens_at_90spec"],
                "sens@95%spec": image["sens_at_95spec"],
                "train s": _whole(entry["training"].get("seconds")),
                "epochs": entry["training"].get("epochs"),
                "score img/s": _whole(entry["images_per_second"]),
            }
        )
    for name, entry in results_json.get("baselines", {}).items():
        fusion = entry.get("kind") == "fusion"
        rows.append(
            {
                "model": name if fusion else f"{name} (trivial)",
                "score": "mean z" if fusion else name,
                "AUROC [95% CI]": (entry["auroc"], tuple(entry["auroc_ci"])),
                "AP [95% CI]": (entry["ap"], tuple(entry["ap_ci"])),
            }
        )
    return rows


def _map_floor(result: ModelResult, examples: Examples) -> float:
    """Where a model's heatmap starts to be red: the calibrated median normal pixel, or for runs
    calibrated before it was recorded, the median of the shown maps' nonzero pixels."""
    stored = result.calibration.get("map_floor")
    if stored is not None:
        return float(stored)
    shown = np.asarray(examples.maps[result.name])
    return float(np.median(shown[shown > 0])) if (shown > 0).any() else 0.0


def _whole(value: float | None) -> int | None:
    """Seconds and throughputs as whole numbers: their decimals are timing noise."""
    return None if value is None else round(value)


def text_table(results_json: dict[str, Any]) -> str:
    """The metrics table as plain text (the CLI prints it)."""
    rows = metrics_rows(results_json)
    columns = ["model", "score", "AUROC [95% CI]", "AP [95% CI]", "sens@90%spec", "train s"]
    cells = [[report.format_value(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def markdown_table(results_json: dict[str, Any]) -> str:
    """The metrics table as Markdown (for the README)."""
    rows = metrics_rows(results_json)
    columns = ["model", "score", "AUROC [95% CI]", "AP [95% CI]", "sens@90%spec", "train s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(report.format_value(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def baseline_entry(
    labels: np.ndarray, scores: np.ndarray, groups: list[str], kind: str = "trivial", **info: Any
) -> dict[str, Any]:
    """AUROC/AP with patient-level CIs of a reference score (a trivial detector, a fusion)."""
    found = metrics.image_metrics(labels, scores, groups, None, n_boot=500)
    return {
        "kind": kind,
        "auroc": found.auroc,
        "auroc_ci": list(found.auroc_ci),
        "ap": found.ap,
        "ap_ci": list(found.ap_ci),
        **info,
    }


def _write_reference_scores(
    path: Path, result: ModelResult, references: dict[str, tuple[dict[str, Any], np.ndarray]]
) -> None:
    """Per-image scores of the trivial detector and the fusions, beside the models' own CSVs."""
    names = list(references)
    with atomic.atomic_open(path, "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "patient_id", "label", "class", *names])
        scored = result.scored
        for i, sample_id in enumerate(scored.ids):
            values = [f"{references[n][1][i]:.8g}" for n in names]
            writer.writerow(
                [
                    sample_id,
                    scored.patient_ids[i],
                    int(scored.labels[i]),
                    scored.classes[i],
                    *values,
                ]
            )


def write_study(
    out_dir: Path,
    context: StudyContext,
    results: list[ModelResult],
    examples: Examples | None,
    baselines: dict[str, tuple[dict[str, Any], np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Write figures, ``results.json`` and ``report.html`` under ``out_dir``; return the JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = out_dir / "figures"
    baselines = baselines or {}
    labels = results[0].scored.labels if results else np.zeros(0)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {
        r.name: (r.scored.labels, r.scored.score) for r in results
    }
    for name, (entry, scores) in baselines.items():
        curves[name if entry.get("kind") == "fusion" else f"{name} (trivial)"] = (labels, scores)
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
        )
    if baselines and results:
        _write_reference_scores(out_dir / "scores" / "references.csv", results[0], baselines)
    results_json = _results_json(context, results, {k: v for k, (v, _) in baselines.items()})
    atomic.write_text(out_dir / RESULTS_FILE, json.dumps(results_json, indent=2, default=float))
    report.write_report(
        out_dir / REPORT_FILE,
        title=context.title,
        sections=_report_sections(context, results_json, figures, examples is not None),
    )
    return results_json


def _report_sections(
    context: StudyContext, results_json: dict[str, Any], figures: Path, has_grid: bool
) -> list[report.Section]:
    split_rows = [
        {"split": split, "class": cls, **counts}
        for split, classes in context.split_summary.items()
        for cls, counts in classes.items()
    ]
    overview = report.key_value_html(
        {
            "data": context.data,
            "protocol": f"{context.protocol}: {context.protocol_description}",
            "evaluated split": context.split,
            "image size": f"{context.image_size} x {context.image_size}",
            "preset": context.preset or "—",
            "command": context.command,
        }
    ) + "".join(report.paragraph_html(note) for note in context.notes)
    sections = [
        report.Section("Data and protocol", overview + report.table_html(split_rows)),
        report.Section(
            "Image-level detection",
            report.table_html(
                metrics_rows(results_json),
                caption="AUROC and AP with 95% bootstrap intervals resampled by patient",
            )
            + report.image_html(figures / FIGURES["roc"], "ROC curves")
            + report.image_html(figures / FIGURES["histograms"], "score histograms"),
        ),
    ]
    if has_grid:
        sections.append(
            report.Section(
                "Reconstructions and heatmaps",
                report.paragraph_html(
                    "Top rows: each model's reconstruction. Bottom rows: the absolute difference "
                    "drawn in red over the image; ground-truth masks outlined in yellow. "
                    "Examples chosen by seed, not by score."
                )
                + report.image_html(figures / FIGURES["grid"], "comparison grid"),
            )
        )
    models = results_json["models"]
    per_class = [{"model": name, **entry["image"]["per_class"]} for name, entry in models.items()]
    variants = [
        {"model": name, "score": score, **values}
        for name, entry in models.items()
        for score, values in entry["score_variants"].items()
    ]
    pixel = [{"model": name, **entry["pixel"]} for name, entry in models.items() if entry["pixel"]]
    fusions = [
        {
            "fusion": name,
            "members": entry["members"],
            "rule": entry["rule"],
            "AUROC": entry["auroc"],
        }
        for name, entry in results_json.get("baselines", {}).items()
        if entry.get("kind") == "fusion"
    ]
    sections.append(
        report.Section(
            "Per class and per score",
            report.table_html(per_class, caption="AUROC of each abnormal class vs all normals")
            + report.table_html(variants, caption="Every score each model offers")
            + (
                report.table_html(fusions, caption="Fusions of z-normalised scores")
                if fusions
                else ""
            ),
        )
    )
    if pixel:
        sections.append(
            report.Section(
                "Localization",
                report.table_html(
                    pixel,
                    caption="Pixel AUROC/AP pooled over the split (normal images as all-zero "
                    "masks), best Dice over thresholds, pointing game",
                ),
            )
        )
    timing = [
        {
            "model": name,
            **{
                key: _whole(value) if key == "seconds" else value
                for key, value in entry["training"].items()
            },
            "scoring s": _whole(entry["scoring_seconds"]),
            "score img/s": _whole(entry["images_per_second"]),
        }
        for name, entry in models.items()
    ]
    sections.append(
        report.Section(
            "Configuration and environment",
            report.table_html(timing, caption="Training and scoring")
            + "".join(report.json_html(e["config"], f"config: {n}") for n, e in models.items())
            + report.json_html(results_json["versions"], "library versions")
            + report.json_html(results_json["machine"], "machine"),
        )
    )
    return sections
