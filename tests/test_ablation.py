"""benchmarks/ablation.py end to end on tiny synthetic data: variants over two seeds, the trivial
detectors, a fusion with one of them and its paired gain, seed ensembles, the Markdown table."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

from benchmark_scripts import load_benchmark
from cxr_anomaly.core.normalise import fuse
from cxr_anomaly.evaluation import metrics
from tiny import SIZE

SPEC = "synthetic:n_train=24,n_val_normal=8,n_test_normal=8,n_test_abnormal=8"
TRAIN = {"max_epochs": 1, "batch_size": 8, "precision": "32-true"}


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], ModuleType]:
    root = tmp_path_factory.mktemp("ablation")
    variants = {
        "variants": [
            {
                "name": "bigan+local",
                "parent": "bigan",
                "model": "bigan",
                "preset": "tiny",
                "train": TRAIN,
                "data": {"intensity": "local"},
                "change": "local contrast normalisation",
            },
            {"name": "bigan", "model": "bigan", "preset": "tiny", "train": TRAIN},
        ],
        "fusions": [
            {"name": "bigan + sharpness", "members": ["bigan"], "sharpness": True},
            {"name": "needs a variant not run", "members": ["vaegan"]},
        ],
    }
    (root / "variants.yaml").write_text(yaml.safe_dump(variants))
    module = load_benchmark("ablation")
    out = root / "out"
    argv = [
        f"--data={SPEC}",
        "--split=test",
        f"--size={SIZE}",
        "--seeds=0,1",
        f"--variants={root / 'variants.yaml'}",
        f"--out={out}",
        f"--cache-dir={root / 'cache'}",
    ]
    assert module.main(argv) == 0
    return out, json.loads((out / "summary-test.json").read_text()), module


def _zscores(out: Path, module: ModuleType, seed: int) -> tuple[np.ndarray, ...]:
    variant = {"name": "bigan", "model": "bigan"}
    return tuple(module._scores(variant, seed, out, out))


@pytest.mark.slow
def test_variants_rows_and_parent_delta(ablation: tuple[Path, dict[str, Any], ModuleType]) -> None:
    out, summary, _ = ablation
    rows = summary["variants"]
    assert list(rows) == ["bigan+local", "bigan"]
    for name, row in rows.items():
        seeds = [json.loads((out / name / f"seed{s}" / "results.json").read_text()) for s in (0, 1)]
        aurocs = [r["models"]["bigan"]["image"]["auroc"] for r in seeds]
        assert row["scores"][row["default_score"]]["auroc"][0] == pytest.approx(np.mean(aurocs))
        assert row["robustness"] is not None
    own = rows["bigan+local"]["scores"][rows["bigan+local"]["default_score"]]["auroc"][0]
    parent = rows["bigan"]["scores"][rows["bigan"]["default_score"]]["auroc"][0]
    assert rows["bigan+local"]["delta_vs_parent"] == pytest.approx(own - parent)
    assert rows["bigan"]["delta_vs_parent"] is None


@pytest.mark.slow
def test_paired_gain_over_parent_per_seed_and_over_seeds(
    ablation: tuple[Path, dict[str, Any], ModuleType],
) -> None:
    out, summary, module = ablation
    rows = summary["variants"]
    assert rows["bigan"]["paired_gain_over_parent"] is None
    paired = rows["bigan+local"]["paired_gain_over_parent"]
    assert paired["seeds"] == [0, 1]
    own_runs, parent_runs = [], []
    for gain in paired["per_seed"]:
        labels, own, groups, _ = module._scores(
            {"name": "bigan+local", "model": "bigan"}, gain["seed"], out, out
        )
        _, parent, _, _ = _zscores(out, module, gain["seed"])
        expected = metrics.paired_difference_ci(labels, own, parent, groups, n_boot=500)
        assert gain["auroc_gain"] == pytest.approx(expected[0])
        assert gain["auroc_gain_ci"] == pytest.approx(list(expected[1]))
        own_runs.append(own)
        parent_runs.append(parent)
    mean, (lo, hi) = metrics.paired_mean_difference_ci(
        labels, own_runs, parent_runs, groups, n_boot=500
    )
    assert paired["auroc_gain"] == pytest.approx(mean)
    assert paired["auroc_gain_ci"] == pytest.approx([lo, hi])
    cell = f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}] (paired, seeds 0, 1)"
    assert cell in module.markdown(summary)


@pytest.mark.slow
def test_each_seed_and_every_scores_interval_are_kept(
    ablation: tuple[Path, dict[str, Any], ModuleType],
) -> None:
    out, summary, _ = ablation
    row = summary["variants"]["bigan"]
    seeds = [json.loads((out / "bigan" / f"seed{s}" / "results.json").read_text()) for s in (0, 1)]
    entries = [r["models"]["bigan"] for r in seeds]
    assert len(row["scores"]) > 1  # the interval of every score, not the default's alone
    for score, values in row["scores"].items():
        own = [e["score_variants"][score]["auroc"] for e in entries]
        assert values["auroc_per_seed"] == pytest.approx(own)
        low, high = values["auroc_ci_first_seed"]
        assert 0.0 <= low <= high <= 1.0
    default = row["scores"][row["default_score"]]
    # The benchmark's own interval of its default score, recomputed from the score file.
    assert default["auroc_ci_first_seed"] == pytest.approx(entries[0]["image"]["auroc_ci"])
    assert default["ap_ci_first_seed"] == pytest.approx(entries[0]["image"]["ap_ci"])
    assert row["train_seconds_per_seed"] == [e["training"]["seconds"] for e in entries]


@pytest.mark.slow
def test_trivial_detectors_see_the_command_line_data(
    ablation: tuple[Path, dict[str, Any], ModuleType],
) -> None:
    out, summary, _ = ablation
    trivial = summary["trivial"]
    assert trivial["intensity"] == "none"
    # Not the first variant's (locally normalised) images: those of the variant that ran on the
    # command line's data.
    own = json.loads((out / "bigan" / "seed0" / "results.json").read_text())["references"]
    for name in ("histogram", "sharpness"):
        assert trivial["entries"][name]["auroc"] == pytest.approx(own[name]["auroc"])


@pytest.mark.slow
def test_fusion_with_sharpness_and_its_paired_gain(
    ablation: tuple[Path, dict[str, Any], ModuleType],
) -> None:
    out, summary, module = ablation
    assert list(summary["fusions"]) == ["bigan + sharpness"]  # the other names a missing variant
    fusion = summary["fusions"]["bigan + sharpness"]
    assert fusion["members"] == ["bigan", "sharpness"]
    trivial = module.trivial_on_split(
        module.DataConfig(spec=SPEC, size=SIZE, cache_dir=str(out.parent / "cache")), "test"
    )
    per_seed = []
    for seed, gain in zip((0, 1), fusion["gain_over_best_member_per_seed"], strict=True):
        labels, z, _, ids = _zscores(out, module, seed)
        assert list(ids) == trivial.ids
        sharp = trivial.z["sharpness"]
        fused = fuse([z, sharp])
        per_seed.append(metrics.auroc(labels, fused))
        best = z if metrics.auroc(labels, z) >= metrics.auroc(labels, sharp) else sharp
        assert gain["over"] == ("bigan" if best is z else "sharpness")
        assert gain["auroc_gain"] == pytest.approx(
            metrics.auroc(labels, fused) - metrics.auroc(labels, best)
        )
        low, high = gain["auroc_gain_ci"]
        assert low <= high
    assert fusion["auroc"][0] == pytest.approx(np.mean(per_seed))


@pytest.mark.slow
def test_seed_ensembles_and_markdown(ablation: tuple[Path, dict[str, Any], ModuleType]) -> None:
    out, summary, module = ablation
    ensemble = summary["ensembles"]["bigan ensemble of 2 seeds"]
    scored = [_zscores(out, module, seed) for seed in (0, 1)]
    assert ensemble["auroc"] == pytest.approx(
        metrics.auroc(scored[0][0], fuse([s[1] for s in scored]))
    )
    table = (out / "summary-test.md").read_text()
    assert "| sharpness (trivial, intensity none) |" in table
    assert "over bigan" in table or "over sharpness" in table
    with open(out / "bigan" / "seed0" / "scores" / "bigan.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 16
