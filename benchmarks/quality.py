"""Detection quality on real data: every model over several training seeds, beside a trivial
detector, with the protocol stated next to every number.

For each seed this runs the project's own ``benchmark`` job (train on normal images, score one
split, patient-level bootstrap intervals) and then aggregates: mean and spread over seeds of
AUROC and AP for every model and every score it offers, training time and epochs, and the gap to
the target. The split is fixed (``--split-seed``) so that seeds vary only the training.

The default data is the ZhangLab root with its ``official`` protocol: the normal images of
``train/`` train, ``test-dev/`` (half of the official test split) is the labelled ``val`` split,
used for choosing; every trained model is also measured with the label-free robustness
yardstick (:mod:`cxr_anomaly.robustness`).

    python benchmarks/quality.py                     # every model on test-dev, 3 seeds
    python benchmarks/quality.py --data folder:../shared/data/zhanglab-cxr/train --splits val,test
    python benchmarks/quality.py --data rsna:/data/rsna --protocol seed --splits test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cxr_anomaly import metrics
from cxr_anomaly.baselines import HistogramDistance
from cxr_anomaly.config import DataConfig
from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.data.splits import split_note
from cxr_anomaly.fusion import disagreement, fuse, zscores
from cxr_anomaly.inference import ScoringOptions
from cxr_anomaly.jobs import BenchmarkOptions, run_benchmark
from cxr_anomaly.models.registry import DEMO, model_names
from cxr_anomaly.references import histogram_scores
from cxr_anomaly.results import references_of
from cxr_anomaly.robustness import robustness_of_run

TARGET = 0.80


def _default_data() -> str:
    root = Path(os.environ.get("CXR_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data"))
    return f"folder:{root / 'zhanglab-cxr'}"


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def aggregate(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over seeds of every model's (and the trivial detector's) metrics."""
    first = next(iter(per_seed.values()))
    models: dict[str, Any] = {}
    for name in first["models"]:
        entries = [r["models"][name] for r in per_seed.values()]
        scores: dict[str, Any] = {}
        for score in entries[0]["score_variants"]:
            scores[score] = {
                "auroc": _spread([e["score_variants"][score]["auroc"] for e in entries]),
                "ap": _spread([e["score_variants"][score]["ap"] for e in entries]),
            }
        models[name] = {
            "default_score": entries[0]["score"],
            "scores": scores,
            "auroc_ci_per_seed": {
                s: r["models"][name]["image"]["auroc_ci"] for s, r in per_seed.items()
            },
            "ap_ci_per_seed": {s: r["models"][name]["image"]["ap_ci"] for s, r in per_seed.items()},
            "train_seconds": _spread([e["training"]["seconds"] for e in entries]),
            "epochs": entries[0]["training"]["epochs"],
            "scoring_images_per_s": _spread([e["images_per_second"] for e in entries]),
            "robustness": _spread(
                [r["robustness"][name]["mean |AUROC - 0.5|"] for r in per_seed.values()]
            )
            if all(name in r.get("robustness", {}) for r in per_seed.values())
            else None,
        }
    baselines = {
        name: {
            "kind": entry.get("kind", "trivial"),
            "auroc": entry["auroc"],
            "auroc_ci": entry["auroc_ci"],
            "ap": entry["ap"],
        }
        for name, entry in references_of(first).items()
    }
    return {
        "data": first["data"],
        "protocol": first["protocol"],
        "split": first["split"],
        "split_note": split_note(first["protocol"]["name"], first["split"]),
        "split_summary": first["split_summary"],
        "image_size": first["image_size"],
        "preset": first["preset"],
        "seeds": list(per_seed),
        "models": models,
        "baselines": baselines,
        "target_auroc": TARGET,
    }


def _scores_csv(path: Path, score: str) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return (
        [r["sample_id"] for r in rows],
        np.array([int(r["label"]) for r in rows]),
        np.array([float(r[score]) for r in rows]),
        [r["patient_id"] for r in rows],
    )


def ensembles(out: Path, split: str, seeds: list[int], models: list[str]) -> dict[str, Any]:
    """Seed ensembles of each model (mean z-score) with the members' disagreement as a score,
    and the fusion of every model and seed; z-scores from each run's normal-validation
    calibration."""
    found: dict[str, Any] = {}
    every: list[np.ndarray] = []
    labels = groups = reference_ids = None
    for model in models:
        members = []
        for seed in seeds:
            run = out / f"seed{seed}"
            calibration = json.loads((run / "runs" / model / "model.json").read_text())[
                "calibration"
            ]
            scored = run / split
            score = json.loads((scored / "results.json").read_text())["models"][model]["score"]
            ids, labels, values, groups = _scores_csv(scored / "scores" / f"{model}.csv", score)
            if reference_ids is not None and ids != reference_ids:
                raise ValueError("the seeds were scored on different images: not one split")
            reference_ids = ids
            members.append(zscores(values, calibration, score))
        every += members
        for name, values in (
            (f"{model} ensemble of {len(seeds)} seeds", fuse(members)),
            (f"{model} seed disagreement", disagreement(members)),
        ):
            found[name] = _entry(labels, values, groups)
    if labels is not None and len(models) > 1:
        found[f"fusion of all models and seeds ({len(every)} members)"] = _entry(
            labels, fuse(every), groups
        )
    return found


def named_fusions(
    out: Path, data: DataConfig, split: str, seeds: list[int], fusions: list[str]
) -> dict[str, Any]:
    """Fusions named by their members (``anatpaste+histogram``): the members of each seed
    fused (mean z-score), AUROC and AP per seed and their mean and spread."""
    if not fusions:
        return {}
    prepared = PreparedData(data)
    prepared.prepare(progress=False)
    _, histogram = histogram_scores(prepared, prepared.view(split))
    found: dict[str, Any] = {}
    for fusion in fusions:
        per_seed = []
        for seed in seeds:
            run, members = out / f"seed{seed}", []
            labels = groups = None
            for member in fusion.split("+"):
                if member == HistogramDistance.name:
                    if histogram is None:
                        raise ValueError("the histogram fusion needs normal validation images")
                    members.append(histogram)
                    continue
                calibration = json.loads((run / "runs" / member / "model.json").read_text())
                results = json.loads((run / split / "results.json").read_text())
                score = results["models"][member]["score"]
                _, labels, values, groups = _scores_csv(
                    run / split / "scores" / f"{member}.csv", score
                )
                members.append(zscores(values, calibration["calibration"], score))
            per_seed.append(_entry(labels, fuse(members), groups))
        found[f"fusion {fusion}"] = {
            "auroc": per_seed[0]["auroc"],
            "auroc_ci": per_seed[0]["auroc_ci"],
            "ap": per_seed[0]["ap"],
            "auroc_over_seeds": _spread([e["auroc"] for e in per_seed]),
            "ap_over_seeds": _spread([e["ap"] for e in per_seed]),
        }
    return found


def only_models(results: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """``results`` restricted to ``models``: other models, and fusions with any of them as a
    member, are left out (so seeds scored with more models aggregate with the rest)."""
    kept = dict(results)
    kept["models"] = {n: e for n, e in results["models"].items() if n in models}
    kept["baselines"] = {
        n: e
        for n, e in references_of(results).items()
        if e.get("kind") != "fusion"
        or {m.split(":")[0] for m in e["members"].split(", ")} <= set(models) | {"histogram"}
    }
    return kept


def seed_robustness(seed_dir: Path, models: list[str]) -> dict[str, dict[str, float]]:
    """The robustness yardstick of each model trained for one seed (kept in robustness.json)."""
    path = seed_dir / "robustness.json"
    found = json.loads(path.read_text()) if path.is_file() else {}
    for model in models:
        if model not in found:
            found[model] = robustness_of_run(seed_dir / "runs" / model)
            path.write_text(json.dumps(found, indent=2))
    return {model: found[model] for model in models}


def _entry(labels: Any, values: np.ndarray, groups: Any) -> dict[str, Any]:
    found = metrics.image_metrics(labels, values, groups, None, n_boot=500)
    return {"auroc": found.auroc, "auroc_ci": list(found.auroc_ci), "ap": found.ap}


def table(summary: dict[str, Any]) -> str:
    """The aggregated results as text: one row per model and score, trivial detector last."""
    lines = [
        f"data: {summary['data']}",
        f"protocol: {summary['protocol']['name']}: {summary['protocol']['description']}",
        f"evaluated split: {summary['split']} (patient-level; {summary['split_note']}); "
        f"image size {summary['image_size']};"
        f" preset {summary['preset']}; training seeds {summary['seeds']}",
        f"{'model':<18} {'score':<10} {'AUROC mean±sd':<15} {'AP mean±sd':<15} "
        f"{'seed-0 AUROC 95% CI':<20} {'epochs':>6} {'train s':>8} {'score img/s':>11} "
        f"{'vs 0.80':>8} {'robust':>6}",
    ]
    for name, entry in summary["models"].items():
        for score, values in entry["scores"].items():
            auroc, ap = values["auroc"], values["ap"]
            ci = (
                entry["auroc_ci_per_seed"][summary["seeds"][0]]
                if score == entry["default_score"]
                else None
            )
            ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"
            lines.append(
                f"{name:<18} {score:<10} {auroc['mean']:.3f}±{auroc['sd']:.3f}    "
                f"{ap['mean']:.3f}±{ap['sd']:.3f}    {ci_text:<20} {entry['epochs']:>6} "
                f"{entry['train_seconds']['mean']:>8.0f} "
                f"{entry['scoring_images_per_s']['mean']:>11.1f} {auroc['mean'] - TARGET:>+8.3f} "
                f"{_robust(entry) if ci else '':>6}"
            )
    for name, entry in summary["baselines"].items():
        ci = entry["auroc_ci"]
        lines.append(
            f"{name + ' (' + entry.get('kind', 'trivial') + ', seed 0)':<34} "
            f"{entry['auroc']:.3f}  AP {entry['ap']:.3f}  [{ci[0]:.3f}, {ci[1]:.3f}]"
        )
    for name, entry in summary.get("ensembles", {}).items():
        ci = entry["auroc_ci"]
        lines.append(
            f"{name:<34} {entry['auroc']:.3f}  AP {entry['ap']:.3f}  [{ci[0]:.3f}, {ci[1]:.3f}]"
        )
    for name, entry in summary.get("fusions", {}).items():
        ci, over = entry["auroc_ci"], entry["auroc_over_seeds"]
        lines.append(
            f"{name:<34} {over['mean']:.3f}±{over['sd']:.3f} over seeds; seed "
            f"{summary['seeds'][0]} {entry['auroc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        )
    return "\n".join(lines)


def _robust(entry: dict[str, Any]) -> str:
    found = entry.get("robustness")
    return "-" if found is None else f"{found['mean']:.3f}"


def markdown(summary: dict[str, Any]) -> str:
    """The aggregated results as a Markdown table (for the README): default scores only."""
    seeds = summary["seeds"]
    n_seeds = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    lines = [
        f"| model | score | AUROC mean ± sd ({n_seeds}) | AUROC 95% CI, seed {seeds[0]} "
        "| AP mean ± sd | epochs | train s (mean) | scoring images/s | robustness |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary["models"].items():
        score = entry["default_score"]
        auroc, ap = entry["scores"][score]["auroc"], entry["scores"][score]["ap"]
        # Seeds are int keys in memory, str keys once read back from JSON.
        ci = {str(k): v for k, v in entry["auroc_ci_per_seed"].items()}[str(seeds[0])]
        lines.append(
            f"| {name} | {score} | {auroc['mean']:.3f} ± {auroc['sd']:.3f} | "
            f"[{ci[0]:.3f}, {ci[1]:.3f}] | {ap['mean']:.3f} ± {ap['sd']:.3f} | {entry['epochs']} "
            f"| {entry['train_seconds']['mean']:.0f} "
            f"| {entry['scoring_images_per_s']['mean']:.1f} | {_robust(entry)} |"
        )
    for name, entry in summary["baselines"].items():
        ci = entry["auroc_ci"]
        lines.append(
            f"| {name} ({entry['kind']}, seed {seeds[0]}) | "
            f"{'mean z' if entry['kind'] == 'fusion' else 'L1 to mean histogram'} | "
            f"{entry['auroc']:.3f} | "
            f"[{ci[0]:.3f}, {ci[1]:.3f}] | {entry['ap']:.3f} | — | — | — | — |"
        )
    for name, entry in summary.get("fusions", {}).items():
        over, ci = entry["auroc_over_seeds"], entry["auroc_ci"]
        lines.append(
            f"| {name} | mean z | {over['mean']:.3f} ± {over['sd']:.3f} | "
            f"[{ci[0]:.3f}, {ci[1]:.3f}] | {entry['ap_over_seeds']['mean']:.3f} ± "
            f"{entry['ap_over_seeds']['sd']:.3f} | — | — | — | — |"
        )
    for name, entry in summary.get("ensembles", {}).items():
        ci = entry["auroc_ci"]
        rule = "sd of z" if "disagreement" in name else "mean z"
        lines.append(
            f"| {name} | {rule} | {entry['auroc']:.3f} | [{ci[0]:.3f}, {ci[1]:.3f}] | "
            f"{entry['ap']:.3f} | — | — | — | — |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=_default_data())
    parser.add_argument("--protocol")
    parser.add_argument(
        "--splits",
        default="val",
        help="labelled splits to report, comma-separated (default: val); each seed's models are"
        " trained once and scored on every split",
    )
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--intensity", default="none", help="per-image intensity standardisation")
    parser.add_argument("--models", default=",".join(model_names(DEMO)))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--epochs", type=int, help="override every preset's max_epochs")
    parser.add_argument("--out", default="benchmarks/results/quality")
    parser.add_argument("--cache-dir")
    parser.add_argument(
        "--fusions",
        default="",
        help="extra fusions, comma-separated, each of members joined by '+' (model names or"
        " 'histogram'), e.g. anatpaste+histogram",
    )
    parser.add_argument(
        "--aggregate-only", action="store_true", help="summarise finished seeds from --out"
    )
    args = parser.parse_args(argv)

    out = Path(args.out)
    data = DataConfig(
        spec=args.data,
        protocol=args.protocol,
        size=args.size,
        split_seed=args.split_seed,
        cache_dir=args.cache_dir,
        intensity=args.intensity,
    )
    splits = args.splits.split(",")
    models = args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    per_split: dict[str, dict[int, dict[str, Any]]] = {split: {} for split in splits}
    for seed in seeds:
        for split in splits:
            split_dir = out / f"seed{seed}" / split
            if args.aggregate_only:
                found = json.loads((split_dir / "results.json").read_text())
                kept = out / f"seed{seed}" / "robustness.json"
                if kept.is_file():
                    found["robustness"] = json.loads(kept.read_text())
                per_split[split][seed] = only_models(found, models)
                continue
            overrides: dict[str, Any] = {"seed": seed}
            if args.epochs:
                overrides["max_epochs"] = args.epochs
            options = BenchmarkOptions(
                out=split_dir,
                runs_dir=out / f"seed{seed}" / "runs",
                split=split,
                scoring=ScoringOptions(),
                command=" ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
                models=tuple(models),
                data=data,
                preset=args.preset,
                train_overrides=overrides,
                progress=False,
            )
            results = run_benchmark(options)
            if results is None:
                return 0
            results["robustness"] = seed_robustness(out / f"seed{seed}", models)
            per_split[split][seed] = results
            print(
                f"seed {seed} {split} done: "
                + ", ".join(f"{n} {e['image']['auroc']:.3f}" for n, e in results["models"].items()),
                flush=True,
            )
    for split, per_seed in per_split.items():
        summary = aggregate(per_seed)
        # An ensemble (and its members' disagreement) needs at least two seeds.
        if len(seeds) > 1:
            summary["ensembles"] = ensembles(out, split, seeds, list(summary["models"]))
        summary["fusions"] = named_fusions(
            out, data, split, seeds, [f for f in args.fusions.split(",") if f]
        )
        print(table(summary))
        (out / f"summary-{split}.json").write_text(json.dumps(summary, indent=2))
        (out / f"summary-{split}.md").write_text(markdown(summary) + "\n")
        print(f"wrote {out / f'summary-{split}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
