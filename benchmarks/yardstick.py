"""The yardstick: trained runs scored on several findings on real anatomy, and on pneumonia twice.

For each recipe (one or more seeds, each a run trained on real normal images and, optionally,
one trained on the built-in phantoms), it measures:

- **pneumonia, real**: AUROC on the two fixed halves of the labelled validation split
  (``choose``, ``confirm``; the manifest ``benchmarks/yardstick/halves-zhanglab-test-dev.csv``);
- **inserted findings**: nodule, consolidation, effusion, pneumothorax and a foreign body
  inserted into that split's normal images (:mod:`cxr_anomaly.evaluation.yardstick.insertions`) at
  three
  difficulty levels, each against the same images untouched, with localization of the map;
- **phantoms**: per-finding AUROC and localization of the phantom-trained run;
- the label-free **robustness** yardstick and the training minutes.

The trivial detectors (fitted on the real training normals at stored intensities) get the same
pneumonia and inserted-finding rows: the inserted findings' levels were fixed while they stayed
near chance. It prints the summary table, and writes it as Markdown and every number as JSON:

    python benchmarks/yardstick.py --run anatpaste-robust runs/real/ap0 runs/phantom/ap0 \\
        --run anatpaste-robust runs/real/ap1 --out benchmarks/results/yardstick-anatpaste
    python benchmarks/yardstick.py --write-halves    # the halves manifest (once)

Every number it prints says which half or which finding it is on; the halves are validation
data (``choose`` chooses; ``confirm`` confirms), never the project's unseen test half.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from common import machine, write_json, zhanglab_root
from cxr_anomaly.core import atomic
from cxr_anomaly.core.config import STORED_INTENSITY, DataConfig
from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.data.preprocess import preprocess
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.evaluation.robustness import robustness_of_run
from cxr_anomaly.evaluation.yardstick.halves import draw_halves, read_halves, write_halves
from cxr_anomaly.evaluation.yardstick.insertions import FINDINGS, LEVELS
from cxr_anomaly.evaluation.yardstick.measure import (
    GENERATORS,
    VALIDATION_SPLIT,
    inserted_findings,
    inserted_pairs,
    load_run_data,
    macro_gain,
    model_scorer,
    phantom_findings,
    pneumonia_halves,
    split_normals,
    trivial_scorers,
)
from cxr_anomaly.jobs.predict import load_model
from cxr_anomaly.reporting import viz
from cxr_anomaly.runtime.inference import infer_arrays

HERE = Path(__file__).resolve().parent
HALVES = HERE / "yardstick" / "halves-zhanglab-test-dev.csv"
MIDDLE = "middle"


def default_data() -> DataConfig:
    """ZhangLab with its official protocol (``test-dev`` is the labelled validation split)."""
    return DataConfig(spec=f"folder:{zhanglab_root()}", protocol="official")


def write_halves_manifest(path: Path) -> None:
    data = PreparedData(default_data())
    samples = data.splits.samples(VALIDATION_SPLIT)
    write_halves(path, samples, draw_halves(samples, seed=0))
    print(f"wrote {path} ({len(samples)} images)")


def write_gallery(path: Path, images: int = 3, seed: int = 0, generator: str = "density") -> None:
    """A grid to look at: rows are normal ``test-dev`` images, columns the original and each
    finding at each level (its mask outlined in red beside the most conspicuous one), drawn by
    ``generator`` (a name of ``GENERATORS``)."""
    data = PreparedData(dataclasses.replace(default_data(), intensity=STORED_INTENSITY))
    originals, _ = split_normals(data)
    rows = []
    for i, original in enumerate(originals[:images]):
        cells = [np.repeat(original[..., None], 3, axis=-1)]
        for finding in FINDINGS:
            for level in LEVELS:
                inserted, masks = inserted_pairs(
                    [original], finding, level, seed, first=i, generator=GENERATORS[generator]
                )
                cells.append(np.repeat(inserted[0][..., None], 3, axis=-1))
                if level == next(iter(LEVELS)):
                    outlined = cells[-1].copy()
                    outlined[masks[0] ^ ndimage.binary_erosion(masks[0])] = (1.0, 0.0, 0.0)
                    cells.append(outlined)
        rows.append(np.concatenate(cells, axis=1))
    grid = np.round(np.concatenate(rows, axis=0) * 255).astype(np.uint8)
    with atomic.atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    print(f"wrote {path}")


def write_map_gallery(
    path: Path, runs: list[tuple[str, Path]], image: int = 0, level: str = MIDDLE, seed: int = 0
) -> None:
    """One row per finding at ``level`` in ``test-dev`` normal image ``image``: the image with
    its mask outlined in yellow, then each run's map in red over it (the run's own colour scale;
    the map stretched over the 256-pixel working image)."""
    loaded = []
    for name, run in runs:
        model, data, _ = load_run_data(run, (VALIDATION_SPLIT,))
        loaded.append((name, model, load_model(run), data.config))
    originals, _ = split_normals(PreparedData(loaded[0][3]))
    original = originals[image]
    rows = []
    for finding in FINDINGS:
        inserted, masks = inserted_pairs([original], finding, level, seed, first=image)
        picture = np.repeat(inserted[0][..., None], 3, axis=-1)
        outlined = picture.copy()
        outlined[masks[0] ^ ndimage.binary_erosion(masks[0])] = (1.0, 0.9, 0.0)
        cells, labels = [outlined], [f"{finding}, {level}"]
        for name, model, scoring, config in loaded:
            prepared = preprocess(inserted[0], config.size, config.intensity)
            amap = infer_arrays(model, prepared[None, None]).maps[0]
            post = scoring.post_processor
            cells.append(
                viz.radiograph_overlay(inserted[0], amap, post.map_floor, post.map_scale or None)
            )
            labels.append(name)
        rows.append(viz.labelled_panels(cells, labels, [], scale=1))
    grid = np.concatenate(rows, axis=0)
    with atomic.atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    print(f"wrote {path}")


def measure_run(
    real: Path, phantom: Path | None, halves: dict[str, str], seed: int, generator: str = "density"
) -> dict:
    """Every yardstick number of one seed's runs (``phantom``: its phantom-trained twin), the
    inserted findings drawn by ``generator`` (a name of ``GENERATORS``)."""
    model, data, metadata = load_run_data(real, ("train", VALIDATION_SPLIT, "val_normal"))
    scorer = model_scorer(model)
    originals, patients = split_normals(data)
    size, intensity = data.config.size, data.config.intensity
    modes = {"model": intensity}
    inserted = inserted_findings(
        {"model": scorer},
        originals,
        patients,
        size,
        modes,
        seed=seed,
        generator=GENERATORS[generator],
    )
    found: dict[str, Any] = {
        "run": str(real),
        "intensity": intensity,
        "pneumonia": pneumonia_halves(scorer, data.view(VALIDATION_SPLIT), halves),
        "inserted": inserted["model"],
        "inserted_patients": list(patients),
        "robustness": robustness_of_run(real)["mean |AUROC - 0.5|"],
        "train_minutes": metadata.training.seconds / 60,
    }
    if phantom is not None:
        phantom_model, phantom_data, _ = load_run_data(phantom, ("test",))
        found["phantom_run"] = str(phantom)
        found["phantoms"] = phantom_findings(phantom_model, phantom_data)
    return found


def measure_trivial(
    halves: dict[str, str], seed: int, generator: str = "density"
) -> dict[str, dict[str, Any]]:
    """The trivial detectors' pneumonia and inserted-finding numbers (stored intensities)."""
    data = PreparedData(dataclasses.replace(default_data(), intensity=STORED_INTENSITY))
    data.prepare(("train", VALIDATION_SPLIT))
    scorers = trivial_scorers(data.view("train").images())
    originals, patients = split_normals(data)
    modes = dict.fromkeys(scorers, STORED_INTENSITY)
    size = data.config.size
    inserted = inserted_findings(
        scorers, originals, patients, size, modes, seed=seed, generator=GENERATORS[generator]
    )
    view = data.view(VALIDATION_SPLIT)
    return {
        name: {"pneumonia": pneumonia_halves(scorer, view, halves), "inserted": inserted[name]}
        for name, scorer in scorers.items()
    }


def _pool(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def _with_ci(cell: str, entry: Any, key: str = "pointing_ci") -> str:
    """``cell`` with the first seed's 95% patient-bootstrap interval ``key`` (by default the
    pointing game's)."""
    interval = entry.get(key) if isinstance(entry, dict) else None
    return f"{cell} [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else cell


def summary_row(name: str, seeds: list[dict[str, Any]]) -> list[str]:
    """One recipe's summary cells, pooled over its seeds (mean ± sd)."""

    def get(*keys: str) -> list[float]:
        out = []
        for seed in seeds:
            value: Any = seed
            for key in keys:
                value = value.get(key, {}) if isinstance(value, dict) else {}
            out.append(float(value) if isinstance(value, (int, float)) else float("nan"))
        return out

    def worst(seed: dict[str, Any]) -> float:
        middle = seed.get("inserted", {}).get(MIDDLE, {})
        return min((middle[f]["auroc"] for f in FINDINGS if f in middle), default=float("nan"))

    return [
        name,
        str(len(seeds)),
        _pool(get("pneumonia", "choose", "auroc")),
        _pool(get("pneumonia", "confirm", "auroc")),
        *(_pool(get("inserted", level, "macro", "auroc")) for level in LEVELS),
        _pool([worst(s) for s in seeds]),
        _pool(get("phantoms", "macro", "auroc")),
        _with_ci(
            _pool(get("inserted", MIDDLE, "macro", "pointing")),
            seeds[0].get("inserted", {}).get(MIDDLE, {}).get("macro"),
        ),
        _with_ci(
            _pool(get("inserted", MIDDLE, "macro", "pixel_ap")),
            seeds[0].get("inserted", {}).get(MIDDLE, {}).get("macro"),
            "pixel_ap_ci",
        ),
        _with_ci(
            _pool(get("inserted", MIDDLE, "macro", "best_dice")),
            seeds[0].get("inserted", {}).get(MIDDLE, {}).get("macro"),
            "best_dice_ci",
        ),
        _with_ci(
            _pool(get("phantoms", "macro", "pointing")),
            seeds[0].get("phantoms", {}).get("macro"),
        ),
        _pool(get("robustness")),
        _pool(get("train_minutes")),
    ]


HEADER = [
    "recipe",
    "seeds",
    "pneumonia choose",
    "pneumonia confirm",
    *(f"inserted {level}" for level in LEVELS),
    "worst finding (middle)",
    "phantoms",
    "pointing (inserted, middle)",
    "pixel AP (inserted, middle)",
    "best Dice (inserted, middle)",
    "pointing (phantoms)",
    "robustness",
    "train min",
]


def finding_rows(name: str, seeds: list[dict[str, Any]]) -> list[list[str]]:
    """Per inserted finding and level: AUROC (first seed's interval) and pointing game."""
    rows = []
    for finding in FINDINGS:
        cells = [name, finding.replace("_", " ")]
        for level in LEVELS:
            values = [s["inserted"][level][finding] for s in seeds]
            low, high = values[0]["ci"]
            auroc = _pool([v["auroc"] for v in values])
            pointing = _with_ci(_pool([v.get("pointing", float("nan")) for v in values]), values[0])
            cells.append(f"{auroc} [{low:.2f}, {high:.2f}]; pointing {pointing}")
        rows.append(cells)
    return rows


def phantom_rows(name: str, seeds: list[dict[str, Any]]) -> list[list[str]]:
    """Per phantom finding (seeds with a phantom twin): AUROC, pointing game, pixel AP."""
    twins = [s["phantoms"] for s in seeds if "phantoms" in s]
    if not twins:
        return []
    return [
        [name, finding, *(_pool([t[finding][k] for t in twins]) for k in PHANTOM_KEYS)]
        for finding in twins[0]
    ]


PHANTOM_KEYS = ("auroc", "pointing", "pixel_ap", "best_dice")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def report(
    recipes: dict[str, list[dict[str, Any]]],
    trivial: dict[str, dict[str, Any]],
    generator: str = "density",
) -> str:
    """The summary table, then each recipe's per-finding table, as Markdown."""
    rows = [summary_row(name, seeds) for name, seeds in recipes.items()]
    rows += [summary_row(f"{name} (trivial)", [found]) for name, found in trivial.items()]
    per_finding = [r for name, seeds in recipes.items() for r in finding_rows(name, seeds)]
    per_finding += [r for n, f in trivial.items() for r in finding_rows(f"{n} (trivial)", [f])]
    protocol = (
        "Protocol: trained on the normal images of ZhangLab `train/` (official protocol, 64 px); "
        "pneumonia: `test-dev` (labelled validation) cut by patient into `choose` and `confirm` "
        "(PNEUMONIA abnormal, NORMAL normal); inserted findings: each of `test-dev`'s 114 normal "
        f"images with one finding drawn by the `{generator}` generator against itself untouched "
        "(AUROC, 95% patient-bootstrap "
        "intervals of the first seed); phantoms: a twin run trained on the built-in phantoms, "
        "their test split. Localization: the drawn map at 64 px against the mask (pointing "
        "game with the first seed's 95% patient-bootstrap interval, pixel AP). Values: mean ± sd "
        "over seeds."
    )
    finding_header = ["recipe", "finding", *LEVELS]
    parts = [protocol, markdown(HEADER, rows), markdown(finding_header, per_finding)]
    phantoms = [r for name, seeds in recipes.items() for r in phantom_rows(name, seeds)]
    if phantoms:
        parts.append(markdown(["recipe", "phantom finding", *PHANTOM_KEYS], phantoms))
    return "\n\n".join(parts) + "\n"


def _gain(value: float, interval: tuple[float, float]) -> str:
    return f"{value:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}]"


def pointing_hits(runs: list[dict[str, Any]]) -> np.ndarray:
    """Each inserted image-finding's pointing hit at the middle level, averaged over seeds
    (findings one after the other, each over the same normal images)."""
    hits = [[r["inserted"][MIDDLE][f]["pointing_hits"] for f in FINDINGS] for r in runs]
    return np.mean([np.concatenate(seed) for seed in hits], axis=0)


def inserted_subset(inserted: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """The middle level's inserted-finding scores of the images ``keep`` selects."""
    return {
        "untouched": np.asarray(inserted["untouched"])[keep],
        MIDDLE: {f: {"scores": np.asarray(inserted[MIDDLE][f]["scores"])[keep]} for f in FINDINGS},
    }


def compare(
    base: list[dict[str, Any]], new: list[dict[str, Any]], patient_half: dict[str, str]
) -> dict[str, Any]:
    """What ``new`` adds over ``base`` (seeds paired in order), each with a paired
    patient-bootstrap interval: pneumonia on each half, the inserted findings' macro AUROC at
    each level and, at the middle level, on the images of each half's patients, each finding at
    the middle level, and the pointing game at the middle level (all findings) on each half."""
    if len(base) != len(new):
        raise SystemExit(f"--compare needs as many seeds of both recipes ({len(base)}, {len(new)})")
    gains: dict[str, Any] = {}
    for half in ("choose", "confirm"):
        first = base[0]["pneumonia"][half]
        gains[f"pneumonia {half}"] = metrics.paired_mean_difference_ci(
            first["labels"],
            [run["pneumonia"][half]["scores"] for run in new],
            [run["pneumonia"][half]["scores"] for run in base],
            first["patients"],
        )
    patients = base[0]["inserted_patients"]
    for level in LEVELS:
        gains[f"inserted {level}"] = macro_gain(
            [run["inserted"] for run in new], [run["inserted"] for run in base], level, patients
        )
    labels = np.r_[np.zeros(len(patients)), np.ones(len(patients))]

    def paired(run: dict[str, Any], finding: str) -> np.ndarray:
        inserted = run["inserted"]
        return np.r_[inserted["untouched"], inserted[MIDDLE][finding]["scores"]]

    for finding in FINDINGS:
        gains[f"{finding} ({MIDDLE})"] = metrics.paired_mean_difference_ci(
            labels,
            [paired(r, finding) for r in new],
            [paired(r, finding) for r in base],
            [*patients, *patients],
        )
    in_half = {h: np.array([patient_half[p] == h for p in patients]) for h in ("choose", "confirm")}
    for half, keep in in_half.items():
        gains[f"inserted {half} ({MIDDLE})"] = macro_gain(
            [inserted_subset(r["inserted"], keep) for r in new],
            [inserted_subset(r["inserted"], keep) for r in base],
            MIDDLE,
            list(np.asarray(patients)[keep]),
        )
    if all("pointing_hits" in r["inserted"][MIDDLE][FINDINGS[0]] for r in [*base, *new]):
        gain = pointing_hits(new) - pointing_hits(base)
        groups = np.tile(np.asarray(patients), len(FINDINGS))
        for half in ("choose", "confirm"):
            keep = np.array([patient_half[p] == half for p in groups])
            interval = metrics.mean_ci(gain[keep], groups[keep])
            gains[f"pointing {half} ({MIDDLE})"] = (float(gain[keep].mean()), interval)
    return gains


def gains_table(comparisons: dict[str, dict[str, Any]]) -> str:
    """One row per compared pair: each gain with its paired interval."""
    keys = list(next(iter(comparisons.values())))
    rows = [[name, *(_gain(*found[k]) for k in keys)] for name, found in comparisons.items()]
    return markdown(["change", *keys], rows)


def patient_halves(path: Path) -> dict[str, str]:
    """patient id -> half, from the halves manifest."""
    with open(path, newline="") as handle:
        return {row["patient_id"]: row["half"] for row in csv.DictReader(handle)}


def reused_recipes(
    paths: list[Path], halves: str, seed: int, generator: str = "density"
) -> dict[str, list[dict[str, Any]]]:
    """The recipes of earlier results JSONs, each seed marked ``reused`` with its file.

    Scoring is deterministic, so an earlier measurement of the same runs on the same halves and
    inserted findings (``seed``) is the measurement; other halves or seeds are refused."""
    recipes: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        payload = json.loads(path.read_text())
        same = (payload.get("halves"), payload.get("seed", 0), payload.get("generator", "density"))
        if same != (halves, seed, generator):
            raise SystemExit(
                f"{path}: measured on other halves, --seed or --generator; score again"
            )
        for name, seeds in payload["recipes"].items():
            if name in recipes:
                raise SystemExit(f"{path}: recipe {name!r} is in two reused files")
            recipes[name] = [{**run, "reused": path.name} for run in seeds]
    return recipes


def check_comparisons(
    pairs: list[list[str]], reused: dict[str, list[Any]], runs: list[list[str]]
) -> None:
    """Refuse a ``--compare`` that cannot be paired before any run is scored."""
    seeds = {name: len(found) for name, found in reused.items()}
    for entry in runs:
        seeds[entry[0]] = seeds.get(entry[0], 0) + 1
    for base, new in pairs:
        missing = [name for name in (base, new) if name not in seeds]
        if missing:
            raise SystemExit(f"--compare names {missing}, neither --run nor --reuse gives them")
        if seeds[base] != seeds[new]:
            raise SystemExit(
                f"--compare {base} {new} needs as many seeds of both ({seeds[base]}, {seeds[new]})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME REAL [PHANTOM]",
        help="one seed of a recipe: its name, the run trained on real images, its phantom twin",
    )
    parser.add_argument("--out", help="results path without suffix (.json and .md are written)")
    parser.add_argument("--halves", type=Path, default=HALVES, help="the halves manifest")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inserted findings")
    parser.add_argument("--write-halves", action="store_true", help="write the halves manifest")
    parser.add_argument("--gallery", type=Path, help="write a PNG grid of inserted findings")
    parser.add_argument(
        "--generator",
        choices=sorted(GENERATORS),
        default="density",
        help="what inserts the findings (density: the yardstick's own, every choice is made on "
        "it; blended: the second generator, for checking that choices carry over to another "
        "look)",
    )
    parser.add_argument(
        "--map-gallery",
        type=Path,
        help="write a PNG: each finding (middle level) in one normal image, each --run's map",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        action="append",
        default=[],
        metavar="JSON",
        help="recipes measured before (an earlier --out's JSON, same halves and seed), "
        "to compare with without scoring them again",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        action="append",
        default=[],
        metavar=("BASE", "NEW"),
        help="also report what recipe NEW adds over recipe BASE, with paired intervals",
    )
    args = parser.parse_args()
    if args.write_halves:
        write_halves_manifest(args.halves)
        return
    if args.gallery:
        write_gallery(args.gallery, seed=args.seed, generator=args.generator)
        return
    if args.map_gallery:
        runs = [(entry[0], Path(entry[1])) for entry in args.run]
        write_map_gallery(args.map_gallery, runs, seed=args.seed)
        return
    if not (args.run or args.reuse) or not args.out:
        parser.error("give --run (or --reuse) at least once, and --out")
    halves = read_halves(args.halves)
    started = time.perf_counter()
    recipes = reused_recipes(args.reuse, args.halves.name, args.seed, args.generator)
    check_comparisons(args.compare, recipes, args.run)
    for entry in args.run:
        if len(entry) not in (2, 3):
            parser.error(f"--run takes NAME REAL [PHANTOM], got {entry}")
        name, real, *phantom = entry
        if recipes.get(name) and "reused" in recipes[name][0]:
            parser.error(f"recipe {name!r} is reused from an earlier JSON; name the new one else")
        twin = Path(phantom[0]) if phantom else None
        found = measure_run(Path(real), twin, halves, args.seed, args.generator)
        recipes.setdefault(name, []).append(found)
    trivial = measure_trivial(halves, args.seed, args.generator)
    text = report(recipes, trivial, args.generator)
    patient_half = patient_halves(args.halves)
    comparisons = {
        f"{new} over {base}": compare(recipes[base], recipes[new], patient_half)
        for base, new in args.compare
    }
    if comparisons:
        text += "\nPaired gains (mean over paired seeds, 95% patient-bootstrap interval):\n\n"
        text += gains_table(comparisons) + "\n"
    print(text)
    out = Path(args.out)
    atomic.write_text(out.with_suffix(".md"), text)
    payload = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(seconds=round(time.perf_counter() - started, 1)),
        "halves": args.halves.name,
        "seed": args.seed,
        "generator": args.generator,
        "recipes": recipes,
        "trivial": trivial,
        "comparisons": comparisons,
    }
    write_json(out.with_suffix(".json"), payload)


if __name__ == "__main__":
    main()
