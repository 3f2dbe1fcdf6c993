"""The chosen defaults judged once on the unseen half: pneumonia and a second generator.

Every setting of the default recipes was chosen on ``test-dev`` (the labelled validation split,
cut into ``choose`` and ``confirm``) and on findings drawn by the yardstick's own generator. This
script scores the trained runs of each default recipe once on what no choice saw:

- **pneumonia** on the held-out test split (ZhangLab ``test/``, the official test's unseen
  half), beside the same run's ``confirm`` half: the gap says whether the choices carried over;
- **findings inserted into the test split's normal images** by both generators: the yardstick's
  (``density``, :mod:`cxr_anomaly.evaluation.yardstick.insertions`) and a second one written
  apart from it (``blended``, :mod:`cxr_anomaly.evaluation.yardstick.blended`): a detector tuned
  to one generator's look loses on the other;
- the trivial detectors on the same images (their levels were fixed near chance).

It prints the tables and writes them as Markdown and every number as JSON:

    python benchmarks/unseen_half.py --data-root /path/to/zhanglab-with-test \\
        --run anatpaste runs/real/ap0 --run anatpaste runs/real/ap1 \\
        --run bigan runs/real/bigan0 --out benchmarks/results/unseen-half

Run it once, on the chosen defaults; a setting changed after reading it would make the test
split a validation split.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import machine, portable, write_json
from cxr_anomaly.core import atomic
from cxr_anomaly.core.config import STORED_INTENSITY, DataConfig
from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.evaluation.yardstick.halves import read_halves
from cxr_anomaly.evaluation.yardstick.insertions import FINDINGS, LEVELS
from cxr_anomaly.evaluation.yardstick.measure import (
    GENERATORS,
    VALIDATION_SPLIT,
    Scorer,
    auroc_with_ci,
    inserted_findings,
    load_run_data,
    model_scorer,
    pneumonia_halves,
    split_normals,
    trivial_scorers,
)
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from yardstick import HALVES, MIDDLE, _pool, default_data, markdown

TEST_SPLIT = "test"


def pneumonia_unseen(scorer: Scorer, data: PreparedData) -> dict[str, Any]:
    """AUROC (95% patient-bootstrap interval) on the whole held-out test split."""
    view = data.view(TEST_SPLIT)
    scores, _ = scorer(view.images())
    return {
        **auroc_with_ci(view.labels, scores, view.patient_ids),
        "n_normal": int((view.labels == 0).sum()),
        "n_abnormal": int((view.labels == 1).sum()),
    }


def run_on(run: Path, data_root: Path | None) -> tuple[AnomalyModel, PreparedData]:
    """The trained model of ``run`` and its data, read from ``data_root`` when given (a copy of
    the run's ZhangLab folder that holds the unseen half as ``test/``)."""
    model, data, _ = load_run_data(run, ("train", VALIDATION_SPLIT, TEST_SPLIT), data_root)
    if not data.view(TEST_SPLIT).ids:
        raise SystemExit(
            f"{data.config.spec} has no held-out test split: this judgement needs the official "
            "test's unseen half as test/ beside train/ and test-dev/ (give --data-root)"
        )
    return model, data


def measure(
    runs: list[tuple[str, Path]], halves: dict[str, str], seed: int, data_root: Path | None
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per run (keyed ``name#i``) and per trivial detector: pneumonia and inserted findings."""
    scorers: dict[str, Scorer] = {}
    modes: dict[str, str] = {}
    found: dict[str, dict[str, Any]] = {}
    normals: tuple[list[np.ndarray], list[str]] | None = None
    for i, (name, run) in enumerate(runs):
        model, data = run_on(run, data_root)
        key = f"{name}#{i}"
        scorers[key] = model_scorer(model)
        modes[key] = data.config.intensity
        found[key] = {
            "recipe": name,
            "run": str(run),
            "intensity": data.config.intensity,
            "confirm": pneumonia_halves(scorers[key], data.view(VALIDATION_SPLIT), halves)[
                "confirm"
            ],
            "unseen": pneumonia_unseen(scorers[key], data),
        }
        normals = normals or split_normals(data, TEST_SPLIT)
        size = data.config.size
    trivial_config = default_data() if data_root is None else DataConfig(f"folder:{data_root}")
    trivial_data = PreparedData(dataclasses.replace(trivial_config, intensity=STORED_INTENSITY))
    trivial_data.prepare(("train", VALIDATION_SPLIT, TEST_SPLIT))
    trivial = trivial_scorers(trivial_data.view("train").images())
    trivial_found: dict[str, dict[str, Any]] = {
        name: {"unseen": pneumonia_unseen(scorer, trivial_data)} for name, scorer in trivial.items()
    }
    assert normals is not None
    originals, patients = normals
    everything = {**scorers, **trivial}
    modes.update(dict.fromkeys(trivial, STORED_INTENSITY))
    for generator, insert in GENERATORS.items():
        inserted = inserted_findings(
            everything, originals, patients, size, modes, seed=seed, generator=insert
        )
        for key, value in inserted.items():
            target = found.get(key) or trivial_found[key]
            target[generator] = value
    for entry in [*found.values(), *trivial_found.values()]:
        entry["inserted_patients"] = list(patients)
    return found, trivial_found


def recipe_rows(found: dict[str, dict[str, Any]], trivial: dict[str, dict[str, Any]]) -> str:
    """The summary: per recipe (mean ± sd over its runs) and trivial detector."""
    recipes: dict[str, list[dict[str, Any]]] = {}
    for entry in found.values():
        recipes.setdefault(entry["recipe"], []).append(entry)
    for name, entry in trivial.items():
        recipes[f"{name} (trivial)"] = [entry]
    rows = []
    for name, entries in recipes.items():

        def pooled(*keys: str, within: list[dict[str, Any]] = entries) -> str:
            values = []
            for entry in within:
                value: Any = entry
                for key in keys:
                    value = value.get(key, {}) if isinstance(value, dict) else {}
                values.append(float(value) if isinstance(value, (int, float)) else float("nan"))
            return _pool(values)

        gap = [e["unseen"]["auroc"] - e["confirm"]["auroc"] for e in entries if "confirm" in e]
        first = entries[0]["unseen"]["ci"]
        rows.append(
            [
                name,
                str(len(entries)),
                pooled("confirm", "auroc"),
                f"{pooled('unseen', 'auroc')} [{first[0]:.2f}, {first[1]:.2f}]",
                _pool(gap) if gap else "—",
                *(
                    pooled(generator, level, "macro", "auroc")
                    for generator in GENERATORS
                    for level in ("conspicuous", MIDDLE)
                ),
                *(pooled(generator, MIDDLE, "macro", "pointing") for generator in GENERATORS),
            ]
        )
    header = [
        "recipe",
        "runs",
        "pneumonia confirm",
        "pneumonia unseen [95% CI]",
        "unseen - confirm",
        *(
            f"inserted {level} ({generator})"
            for generator in GENERATORS
            for level in ("conspicuous", MIDDLE)
        ),
        *(f"pointing middle ({generator})" for generator in GENERATORS),
    ]
    return markdown(header, rows)


def finding_rows(found: dict[str, dict[str, Any]]) -> str:
    """Per recipe, generator and finding at the middle level (mean over the recipe's runs)."""
    recipes: dict[str, list[dict[str, Any]]] = {}
    for entry in found.values():
        recipes.setdefault(entry["recipe"], []).append(entry)
    rows = [
        [
            name,
            generator,
            *(_pool([e[generator][MIDDLE][f]["auroc"] for e in entries]) for f in FINDINGS),
        ]
        for name, entries in recipes.items()
        for generator in GENERATORS
    ]
    return markdown(["recipe", "generator", *(f.replace("_", " ") for f in FINDINGS)], rows)


PROTOCOL = (
    "Protocol: trained on the normal images of ZhangLab `train/` (official protocol, 64 px), "
    "each recipe's default; settings chosen on `test-dev` (validation) and on the `density` "
    "generator's findings. Pneumonia: `confirm` (half of `test-dev`) and the unseen half "
    "(ZhangLab `test/`, PNEUMONIA abnormal, NORMAL normal; 95% patient-bootstrap interval of "
    "the first run). Inserted findings: each normal image of `test/` with one finding against "
    "itself untouched, by the yardstick's generator (`density`) and by the second one "
    f"(`blended`), levels {', '.join(LEVELS)}; macro AUROC over {len(FINDINGS)} findings and the "
    "pointing game of the default map at the middle level. Values: mean ± sd over runs."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        nargs=2,
        action="append",
        required=True,
        metavar=("RECIPE", "RUN"),
        help="a trained run of a default recipe (repeat the recipe for more seeds)",
    )
    parser.add_argument("--out", required=True, help="results path without suffix")
    parser.add_argument("--halves", type=Path, default=HALVES, help="the halves manifest")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inserted findings")
    parser.add_argument(
        "--data-root",
        type=Path,
        help="the ZhangLab folder holding train/, test-dev/ and the unseen test/ "
        "(default: each run's own data)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    runs = [(name, Path(run)) for name, run in args.run]
    found, trivial = measure(runs, read_halves(args.halves), args.seed, args.data_root)
    text = "\n\n".join([PROTOCOL, recipe_rows(found, trivial), finding_rows(found)]) + "\n"
    print(text)
    out = Path(args.out)
    atomic.write_text(out.with_suffix(".md"), text)
    payload = {
        "command": portable(" ".join([Path(sys.argv[0]).name, *sys.argv[1:]])),
        "machine": machine(seconds=round(time.perf_counter() - started, 1)),
        "halves": args.halves.name,
        "seed": args.seed,
        "runs": found,
        "trivial": trivial,
    }
    write_json(out.with_suffix(".json"), payload)


if __name__ == "__main__":
    main()
