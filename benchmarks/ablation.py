"""Ablation on real data: what each change to a model's recipe adds, over several seeds.

Each variant of ``benchmarks/ablation.yaml`` is a model with a preset and overrides (model
parameters, training settings, and ``data:`` preprocessing such as ``intensity`` or ``size``),
and names the variant it changes (its parent). For every variant and training seed this runs
the project's own ``benchmark`` job on one labelled split, then prints (and writes as Markdown,
with every score in the JSON) one row per variant: its default score's AUROC (mean ± sd over
seeds, the first seed's 95% patient-bootstrap interval), training time, and the change in AUROC
against the parent (paired over the seeds both ran, with its interval). The trivial detectors
are fitted and scored on the command line's data (no variant's ``data:`` overrides), and their
rows say which intensities that was. Fusions
listed in the file combine variants' z-scores (each z-normalised on the normal validation images)
with those trivial detectors where asked (``histogram: true``, ``sharpness: true``); a fusion's
row gives its gain over its best single member with a paired patient-bootstrap interval (the
same resamples score both), since a gain inside the noise of 324 images is not one. With
several seeds, each
variant's seed ensemble (mean z-score) and its members' disagreement (their standard deviation)
get rows of their own.
Every trained run is also measured with the label-free robustness yardstick
(:mod:`cxr_anomaly.evaluation.robustness`, on its normal validation images).

The default data is the ZhangLab root with its ``official`` protocol: the normal images of
``train/`` train, ``test-dev/`` (half of the official test split) is the labelled ``val``
split, used for choosing, and every number this script prints on it says so.

    python benchmarks/ablation.py --seeds 0                        # choose on test-dev
    python benchmarks/ablation.py --variants benchmarks/generalisation.yaml --seeds 0,1,2

``--runs-from DIR`` scores the runs trained by an earlier call with ``--out DIR`` (another split,
no retraining).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from common import portable, zhanglab_root
from cxr_anomaly.core.config import DataConfig
from cxr_anomaly.core.normalise import disagreement, fuse
from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.data.splits import split_note
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.evaluation.references import ReferenceJson, reference_entry, trivial_scores
from cxr_anomaly.evaluation.robustness import robustness_of_run
from cxr_anomaly.jobs.study import BenchmarkOptions, run_benchmark
from cxr_anomaly.postprocess.baselines import TRIVIAL_DETECTORS
from cxr_anomaly.runtime.checkpoint import read_metadata
from cxr_anomaly.runtime.trainer import ScoringOptions

HERE = Path(__file__).resolve().parent


def _default_data() -> str:
    return f"folder:{zhanglab_root()}"


def variant_data(variant: dict[str, Any], data: DataConfig) -> DataConfig:
    """The data settings of one variant: the command line's, with its ``data:`` overrides."""
    return dataclasses.replace(data, **variant.get("data", {}))


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def runs_dir(root: Path, variant: dict[str, Any], seed: int) -> Path:
    """Where one variant's trained run of one seed lives under ``root``."""
    return root / variant["name"] / f"seed{seed}" / "runs"


def run_variant(
    variant: dict[str, Any], seed: int, args: argparse.Namespace, data: DataConfig
) -> dict[str, Any]:
    """Train (or reuse) one variant for one seed and score the split; its ``results.json``."""
    model = variant["model"]
    train = {"seed": seed, **variant.get("train", {})}
    options = BenchmarkOptions(
        out=Path(args.out) / variant["name"] / f"seed{seed}",
        runs_dir=runs_dir(Path(args.runs_from or args.out), variant, seed),
        split=args.split,
        scoring=ScoringOptions(),
        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        models=(model,),
        data=variant_data(variant, data),
        preset=variant.get("preset", "quick"),
        train_overrides=train,
        model_overrides={model: variant.get("model_params", {})},
        progress=False,
    )
    results = run_benchmark(options)
    if results is None:
        raise SystemExit(0)
    return {**results, "robustness": run_robustness(options.out, options.runs_dir / model)}


def run_robustness(out: Path, run_dir: Path) -> dict[str, float]:
    """The robustness yardstick of one trained run, kept in ``out/robustness.json``."""
    path = out / "robustness.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    found = robustness_of_run(run_dir)
    path.write_text(json.dumps(found, indent=2))
    return found


def score_intervals(variant: dict[str, Any], seed: int, out: Path) -> dict[str, dict[str, Any]]:
    """AUROC and AP with 95% patient-bootstrap intervals of every score one seed computed, from
    its per-image score file (the benchmark's own intervals cover the default score only)."""
    run = out / variant["name"] / f"seed{seed}"
    with open(run / "scores" / f"{variant['model']}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    results = json.loads((run / "results.json").read_text())
    labels = np.array([int(r["label"]) for r in rows])
    groups = np.array([r["patient_id"] for r in rows])
    found: dict[str, dict[str, Any]] = {}
    for score in results["models"][variant["model"]]["score_variants"]:
        values = np.array([float(r[score]) for r in rows])
        found[score] = dataclasses.asdict(metrics.image_metrics(labels, values, groups, None))
    return found


def _default_scores(
    variant: dict[str, Any], seed: int, out: Path
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(default score's name, labels, its values, patient ids, sample ids) for one seed."""
    run = out / variant["name"] / f"seed{seed}"
    results = json.loads((run / "results.json").read_text())
    score = results["models"][variant["model"]]["score"]
    with open(run / "scores" / f"{variant['model']}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return (
        score,
        np.array([int(r["label"]) for r in rows]),
        np.array([float(r[score]) for r in rows]),
        np.array([r["patient_id"] for r in rows]),
        np.array([r["sample_id"] for r in rows]),
    )


def _scores(
    variant: dict[str, Any], seed: int, out: Path, runs_root: Path
) -> tuple[np.ndarray, ...]:
    """(labels, z-score of the variant's default score, patient ids, sample ids) for one seed."""
    score, labels, values, groups, ids = _default_scores(variant, seed, out)
    metadata = read_metadata(runs_dir(runs_root, variant, seed) / variant["model"])
    if metadata.post_processor is None:
        raise ValueError(f"{variant['name']}: seed {seed} was trained without normal validation")
    return labels, metadata.post_processor.zscores(values, score), groups, ids


def paired_gains_over_parent(
    variant: dict[str, Any], parent: dict[str, Any], seeds: list[int], out: Path
) -> dict[str, Any]:
    """The variant's AUROC gain over its parent (default score against default score) for each
    seed that trained both, and their mean over those seeds, each with a paired patient-bootstrap
    interval (the same resamples score both), so that a gain inside the noise reads as one."""
    own_runs, parent_runs = [], []
    per_seed = []
    for seed in seeds:
        _, labels, values, groups, ids = _default_scores(variant, seed, out)
        _, _, parent_values, _, parent_ids = _default_scores(parent, seed, out)
        if not np.array_equal(ids, parent_ids):
            raise ValueError(f"{variant['name']} and its parent were scored on different images")
        gain, interval = metrics.paired_difference_ci(
            labels, values, parent_values, groups, n_boot=500
        )
        per_seed.append({"seed": seed, "auroc_gain": gain, "auroc_gain_ci": list(interval)})
        own_runs.append(values)
        parent_runs.append(parent_values)
    mean, interval = metrics.paired_mean_difference_ci(
        labels, own_runs, parent_runs, groups, n_boot=500
    )
    return {
        "seeds": seeds,
        "auroc_gain": mean,
        "auroc_gain_ci": list(interval),
        "per_seed": per_seed,
    }


@dataclass
class TrivialOnSplit:
    """The trivial detectors on the split, fitted on the command line's data (no variant's
    ``data:`` overrides): per-image z-scores for fusions and each detector's metrics."""

    intensity: str
    ids: list[str]
    z: dict[str, np.ndarray | None]
    entries: dict[str, ReferenceJson]


def trivial_on_split(data: DataConfig, split: str) -> TrivialOnSplit:
    """Fit and score every trivial detector on ``split``; z-normalised on normal validation."""
    prepared = PreparedData(data)
    prepared.prepare(progress=False)
    view = prepared.view(split)
    z: dict[str, np.ndarray | None] = {}
    entries: dict[str, ReferenceJson] = {}
    for kind in TRIVIAL_DETECTORS:
        scores, z[kind.name] = trivial_scores(kind(), prepared, view)
        entries[kind.name] = reference_entry(view.labels, scores, view.patient_ids, n_boot=500)
    return TrivialOnSplit(data.intensity, view.ids, z, entries)


TRIVIAL_CUES = {
    "histogram": "global intensity histogram, L1 to the mean normal histogram",
    "sharpness": "fine-detail energy (mean absolute Laplacian), distance to the normal mean",
}


def _trivial_members(spec: dict[str, Any]) -> list[str]:
    """The trivial detectors a fusion's spec asks for (``histogram: true`` and the like)."""
    return [kind.name for kind in TRIVIAL_DETECTORS if spec.get(kind.name)]


def fusion_rows(
    spec: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    seeds: list[int],
    out: Path,
    runs_root: Path,
    trivial: TrivialOnSplit,
) -> dict[str, Any]:
    """One fusion's AUROC/AP per seed (members of the same seed fused) and over seeds, and its
    gain over its best single member with a paired patient-bootstrap interval."""
    per_seed, gains = [], []
    for seed in seeds:
        scored = [_scores(variants[name], seed, out, runs_root) for name in spec["members"]]
        labels, _, groups, ids = scored[0]
        if any(not np.array_equal(other[3], ids) for other in scored[1:]):
            raise ValueError(f"the members of {spec['name']} were scored on different images")
        members = {name: z for name, (_, z, _, _) in zip(spec["members"], scored, strict=True)}
        for name in _trivial_members(spec):
            found_z = trivial.z.get(name)
            if found_z is None:
                raise ValueError(f"a fusion with {name} needs its scores on normal validation")
            if list(ids) != trivial.ids:
                raise ValueError(f"{name} was scored on other images than {spec['members'][0]}")
            members[name] = found_z
        fused = fuse(list(members.values()))
        per_seed.append(metrics.image_metrics(labels, fused, groups, None, n_boot=500))
        best = max(members, key=lambda name: metrics.auroc(labels, members[name]))
        gain, interval = metrics.paired_difference_ci(
            labels, fused, members[best], groups, n_boot=500
        )
        gains.append({"over": best, "auroc_gain": gain, "auroc_gain_ci": list(interval)})
    return {
        "auroc": _mean_sd([f.auroc for f in per_seed]),
        "ap": _mean_sd([f.ap for f in per_seed]),
        "auroc_per_seed": [f.auroc for f in per_seed],
        "auroc_ci_seed0": list(per_seed[0].auroc_ci),
        "members": spec["members"] + _trivial_members(spec),
        "trivial_intensity": trivial.intensity,
        "gain_over_best_member_per_seed": gains,
    }


def seed_ensembles(
    variants: dict[str, dict[str, Any]], seeds: list[int], out: Path, runs_root: Path
) -> dict[str, Any]:
    """For each variant trained with several seeds: the seed ensemble (mean of the members'
    z-scores) and the members' disagreement (their standard deviation) as scores of their own."""
    found: dict[str, Any] = {}
    if len(seeds) < 2:
        return found
    for name, variant in variants.items():
        scored = [_scores(variant, seed, out, runs_root) for seed in seeds]
        labels, _, groups, ids = scored[0]
        if any(not np.array_equal(other[3], ids) for other in scored[1:]):
            raise ValueError(f"the seeds of {name} were scored on different images")
        members = [z for _, z, _, _ in scored]
        for kind, values in (("ensemble", fuse(members)), ("disagreement", disagreement(members))):
            result = metrics.image_metrics(labels, values, groups, None, n_boot=500)
            found[f"{name} {kind} of {len(seeds)} seeds"] = {
                "auroc": result.auroc,
                "auroc_ci": list(result.auroc_ci),
                "ap": result.ap,
            }
    return found


def summarise(
    variants: dict[str, dict[str, Any]],
    per_seed: dict[str, dict[int, dict[str, Any]]],
    out: Path,
) -> dict[str, Any]:
    """Mean and spread over seeds for every variant and score (with each seed's value, and the
    first seed's intervals of every score), with the parent's delta."""
    rows: dict[str, Any] = {}
    for name, variant in variants.items():
        results = per_seed[name]
        entries = [r["models"][variant["model"]] for r in results.values()]
        first = next(iter(results.values()))
        first_intervals = score_intervals(variant, next(iter(results)), out)
        scores = {
            score: {
                "auroc_ci_first_seed": first_intervals[score]["auroc_ci"],
                "ap_ci_first_seed": first_intervals[score]["ap_ci"],
                "auroc": _mean_sd([e["score_variants"][score]["auroc"] for e in entries]),
                "ap": _mean_sd([e["score_variants"][score]["ap"] for e in entries]),
                # Each seed's own, so that seeds run by separate calls can be pooled later.
                "auroc_per_seed": [e["score_variants"][score]["auroc"] for e in entries],
                "ap_per_seed": [e["score_variants"][score]["ap"] for e in entries],
            }
            for score in entries[0]["score_variants"]
        }
        rows[name] = {
            "model": variant["model"],
            "change": variant.get("change", ""),
            "parent": variant.get("parent"),
            "default_score": entries[0]["score"],
            "scores": scores,
            "auroc_ci_seed0": entries[0]["image"]["auroc_ci"],
            "epochs": entries[0]["training"]["epochs"],
            "epochs_per_seed": [e["training"]["epochs"] for e in entries],
            "best_epoch_per_seed": [e["training"].get("best_epoch") for e in entries],
            "train_seconds": _mean_sd([e["training"]["seconds"] for e in entries]),
            "train_seconds_per_seed": [e["training"]["seconds"] for e in entries],
            "scoring_images_per_s": _mean_sd([e["images_per_second"] for e in entries]),
            "data": variant.get("data", {}),
            "robustness": _mean_sd(
                [r["robustness"]["mean |AUROC - 0.5|"] for r in results.values()]
            )
            if all("robustness" in r for r in results.values())
            else None,
            "robustness_per_change_seed0": first.get("robustness"),
        }
    for name, row in rows.items():
        parent = rows.get(row["parent"]) if row["parent"] else None
        own = row["scores"][row["default_score"]]["auroc"][0]
        row["delta_vs_parent"] = (
            own - parent["scores"][parent["default_score"]]["auroc"][0] if parent else None
        )
        common = [s for s in per_seed[name] if parent and s in per_seed[row["parent"]]]
        row["paired_gain_over_parent"] = (
            paired_gains_over_parent(variants[name], variants[row["parent"]], common, out)
            if common
            else None
        )
    return rows


def _delta(delta: float | None, paired: dict[str, Any] | None) -> str:
    """The Δ-vs-parent cell: the paired gain over the seeds both ran, with its interval, or
    else the difference of the two rows' means."""
    if delta is None:
        return "—"
    if paired is None:
        return f"{delta:+.3f}"
    lo, hi = paired["auroc_gain_ci"]
    seeds = ", ".join(map(str, paired["seeds"]))
    return f"{paired['auroc_gain']:+.3f} [{lo:+.3f}, {hi:+.3f}] (paired, seeds {seeds})"


def _robust(row: dict[str, Any]) -> str:
    return "-" if row.get("robustness") is None else f"{row['robustness'][0]:.3f}"


def markdown(summary: dict[str, Any]) -> str:
    """The ablation as Markdown (for the README): the protocol, then each variant's default
    score (mean ± sd over seeds, the first seed's interval; its other scores' means in
    parentheses), epochs run (and the best
    normal-validation epoch kept, where chosen) per seed."""
    n = len(summary["seeds"])
    lines = [
        f"Data: {portable(str(summary['data']))}; protocol {summary['protocol']}; "
        f"split {summary['split']} "
        f"({summary['split_note']}); {summary['size']}x{summary['size']}; seeds "
        f"{', '.join(map(str, summary['seeds']))}.",
        "",
        f"| variant | change | score | AUROC (mean ± sd, {n} seed{'s' if n > 1 else ''}) | "
        f"seed-{summary['seeds'][0]} 95% CI | "
        "Δ vs parent | epochs (best) per seed | train s (mean) | robustness |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary["variants"].items():
        score = row["default_score"]
        ci, delta = row["auroc_ci_seed0"], row["delta_vs_parent"]
        auroc = row["scores"][score]["auroc"]
        others = ", ".join(  # every other score the runs computed, mean over seeds
            f"{other}: {values['auroc'][0]:.3f}"
            for other, values in row["scores"].items()
            if other != score
        )
        epochs = ", ".join(
            f"{e}" + (f" ({b})" if b is not None else "")
            for e, b in zip(
                row.get("epochs_per_seed", [row["epochs"]]),
                row.get("best_epoch_per_seed", [None]),
                strict=False,
            )
        )
        lines.append(
            f"| {name} | {row['change']} | {score} | {auroc[0]:.3f} ± {auroc[1]:.3f}"
            f"{f' ({others})' if others else ''} | [{ci[0]:.3f}, {ci[1]:.3f}] | "
            f"{_delta(delta, row.get('paired_gain_over_parent'))} | {epochs} | "
            f"{row['train_seconds'][0]:.0f} | {_robust(row)} |"
        )
    trivial = summary.get("trivial", {})
    for name, entry in trivial.get("entries", {}).items():
        ci = entry["auroc_ci"]
        lines.append(
            f"| {name} (trivial, intensity {trivial['intensity']}) | {TRIVIAL_CUES[name]} | — | "
            f"{entry['auroc']:.3f} | [{ci[0]:.3f}, {ci[1]:.3f}] | — | — | — | — |"
        )
    for name, row in summary["fusions"].items():
        ci = row["auroc_ci_seed0"]
        gain = row["gain_over_best_member_per_seed"][0]
        lo, hi = gain["auroc_gain_ci"]
        lines.append(
            f"| fusion {name} | mean of z-scores | mean z | {row['auroc'][0]:.3f} ± "
            f"{row['auroc'][1]:.3f} | [{ci[0]:.3f}, {ci[1]:.3f}] | {gain['auroc_gain']:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] over {gain['over']} | — | — | — |"
        )
    for name, row in summary.get("ensembles", {}).items():
        ci = row["auroc_ci"]
        rule = "mean of z-scores" if "ensemble" in name else "sd of z-scores over seeds"
        lines.append(
            f"| {name} | {rule} | {'mean z' if 'ensemble' in name else 'sd z'} | "
            f"{row['auroc']:.3f} | [{ci[0]:.3f}, {ci[1]:.3f}] | — | — | — | — |"
        )
    lines += [
        "",
        "Robustness: mean over eight mild acquisition changes (gamma 0.8 and 1.25, contrast "
        "±15%, a 3-pixel shift, a 3-degree rotation, a 10% tighter field of view, JPEG quality "
        "75) of |AUROC - 0.5| between "
        "normal validation images and their changed copies; 0 means the changes go unnoticed.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=_default_data())
    parser.add_argument("--protocol")
    parser.add_argument("--split", default="val")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", default=str(HERE / "ablation.yaml"))
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    parser.add_argument("--out", default="benchmarks/results/ablation")
    parser.add_argument("--runs-from", help="score the trained runs of an earlier --out")
    parser.add_argument("--cache-dir")
    parser.add_argument(
        "--aggregate-only", action="store_true", help="summarise finished runs found in --out"
    )
    args = parser.parse_args(argv)

    spec = yaml.safe_load(Path(args.variants).read_text())
    variants = {v["name"]: v for v in spec["variants"]}
    if args.only:
        variants = {n: variants[n] for n in args.only.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    data = DataConfig(
        spec=args.data,
        protocol=args.protocol,
        size=args.size,
        split_seed=args.split_seed,
        cache_dir=args.cache_dir,
    )
    per_seed: dict[str, dict[int, dict[str, Any]]] = {}
    for name, variant in variants.items():
        per_seed[name] = {}
        for seed in seeds:
            finished = Path(args.out) / name / f"seed{seed}" / "results.json"
            if args.aggregate_only:
                results = json.loads(finished.read_text())
                kept = finished.parent / "robustness.json"
                if kept.is_file():
                    results["robustness"] = json.loads(kept.read_text())
            else:
                results = run_variant(variant, seed, args, data)
            per_seed[name][seed] = results
            entry = results["models"][variant["model"]]
            print(
                f"{name} seed {seed}: {entry['score']} AUROC {entry['image']['auroc']:.3f}",
                flush=True,
            )
    out = Path(args.out)
    first = next(iter(next(iter(per_seed.values())).values()))
    trivial = trivial_on_split(data, args.split)
    fusions = {
        f["name"]: fusion_rows(f, variants, seeds, out, Path(args.runs_from or out), trivial)
        for f in spec.get("fusions", [])
        if all(m in variants for m in f["members"])
    }
    summary = {
        "data": first["data"],
        "protocol": f"{first['protocol']['name']}: {first['protocol']['description']}",
        "split": args.split,
        "split_note": split_note(first["protocol"]["name"], args.split),
        "split_summary": first["split_summary"],
        "size": args.size,
        "seeds": seeds,
        "variants": summarise(variants, per_seed, out),
        "fusions": fusions,
        "ensembles": seed_ensembles(variants, seeds, out, Path(args.runs_from or out)),
        "trivial": {"intensity": trivial.intensity, "entries": trivial.entries},
    }
    print(markdown(summary))
    (out / f"summary-{args.split}.json").write_text(json.dumps(summary, indent=2))
    (out / f"summary-{args.split}.md").write_text(markdown(summary) + "\n")
    print(f"wrote {out / f'summary-{args.split}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
