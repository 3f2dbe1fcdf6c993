"""The yardstick script's paired comparisons: pointing per half, and reusing measured recipes."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from benchmark_scripts import load_benchmark

FINDINGS = ("nodule", "consolidation", "effusion", "pneumothorax", "foreign_body")


@pytest.fixture(scope="module")
def yardstick() -> ModuleType:
    return load_benchmark("yardstick")


def _run(hits: list[int], seed: int) -> dict[str, Any]:
    """A measured seed on 4 patients' images: pneumonia on both halves, inserted findings whose
    pointing hits are ``hits`` (one per image) for every finding."""
    rng = np.random.default_rng(seed)
    patients = ["a", "b", "c", "d"]
    labels = [0, 0, 1, 1]
    half = {"labels": labels, "scores": rng.random(4).tolist(), "patients": patients}
    level = {
        f: {"scores": rng.random(4).tolist(), "pointing_hits": hits, "auroc": 0.5} for f in FINDINGS
    }
    inserted: dict[str, Any] = {"untouched": rng.random(4).tolist()}
    for name in ("conspicuous", "middle", "faint"):
        inserted[name] = {**level, "macro": {"auroc": 0.5}}
    return {
        "pneumonia": {"choose": half, "confirm": half},
        "inserted": inserted,
        "inserted_patients": patients,
    }


def test_pointing_gains_are_reported_per_half(yardstick: ModuleType) -> None:
    halves = {"a": "choose", "b": "choose", "c": "confirm", "d": "confirm"}
    base, new = [_run([0, 0, 0, 0], 0)], [_run([1, 1, 0, 1], 1)]
    gains = yardstick.compare(base, new, halves)
    choose, (low, high) = gains["pointing choose (middle)"]
    confirm, _ = gains["pointing confirm (middle)"]
    assert choose == pytest.approx(1.0) and low == pytest.approx(1.0) == high
    assert confirm == pytest.approx(0.5)
    # The inserted findings' AUROC is paired on each half's images too.
    assert {"inserted choose (middle)", "inserted confirm (middle)"} <= set(gains)


def test_reused_recipes_keep_their_source_and_refuse_other_seeds(
    yardstick: ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "earlier.json"
    payload = {"halves": "h.csv", "seed": 0, "recipes": {"base": [_run([0, 1, 0, 1], 0)]}}
    path.write_text(json.dumps(payload))
    recipes = yardstick.reused_recipes([path], "h.csv", 0)
    assert recipes["base"][0]["reused"] == "earlier.json"
    with pytest.raises(SystemExit, match="--seed or --generator"):
        yardstick.reused_recipes([path], "h.csv", 1)
    with pytest.raises(SystemExit, match="--seed or --generator"):
        yardstick.reused_recipes([path], "h.csv", 0, generator="blended")
    with pytest.raises(SystemExit, match="two reused files"):
        yardstick.reused_recipes([path, path], "h.csv", 0)


def test_unseen_half_rows_pool_runs_and_show_the_gap() -> None:
    unseen_half = load_benchmark("unseen_half")
    run = _run([0, 1, 0, 1], 0)
    entry = {
        "recipe": "anatpaste",
        "confirm": {"auroc": 0.90},
        "unseen": {"auroc": 0.86, "ci": [0.8, 0.9]},
        "density": run["inserted"],
        "blended": run["inserted"],
    }
    second = {**entry, "unseen": {"auroc": 0.88, "ci": [0.8, 0.9]}}
    trivial = {"histogram": {k: v for k, v in entry.items() if k != "confirm"}}
    table = unseen_half.recipe_rows({"anatpaste#0": entry, "anatpaste#1": second}, trivial)
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert rows[0][:5] == [
        "| anatpaste",
        "2",
        "0.900 ± 0.000",
        "0.870 ± 0.014 [0.80, 0.90]",
        "-0.030 ± 0.014",
    ]
    assert rows[1][0] == "| histogram (trivial)" and rows[1][4] == "—"


def test_unpairable_comparisons_are_refused_before_scoring(yardstick: ModuleType) -> None:
    reused: dict[str, list[Any]] = {"base": [{}, {}, {}]}
    runs = [["new", "runs/new-s0"]]
    with pytest.raises(SystemExit, match=r"as many seeds of both \(3, 1\)"):
        yardstick.check_comparisons([["base", "new"]], reused, runs)
    with pytest.raises(SystemExit, match="neither --run nor --reuse"):
        yardstick.check_comparisons([["base", "other"]], reused, runs)
    runs += [["new", "runs/new-s1"], ["new", "runs/new-s2"]]
    yardstick.check_comparisons([["base", "new"]], reused, runs)
