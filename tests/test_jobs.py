"""End to end: benchmark every model on tiny synthetic data; evaluate; the HTML report."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cxr_anomaly import cli
from cxr_anomaly.core.config import DataConfig
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.jobs.study import (
    BenchmarkOptions,
    StudyOptions,
    evaluate_run,
    run_benchmark,
)
from cxr_anomaly.models.registry import DEMO, REFERENCE, model_names
from cxr_anomaly.reporting.html import REPORT_FILE
from cxr_anomaly.reporting.results import FIGURES, ORIGINALS_FIGURE, RESULTS_FILE, ResultsJson
from cxr_anomaly.runtime.trainer import ScoringOptions
from tiny import MODEL_NAMES, SIZE, TINY_PARAMS, tiny_data


def _options(out: Path, cache: Path) -> BenchmarkOptions:
    return BenchmarkOptions(
        out=out,
        models=MODEL_NAMES,
        data=tiny_data(cache),
        train_overrides={"max_epochs": 1, "batch_size": 8, "precision": "32-true"},
        model_overrides={name: dict(TINY_PARAMS[name]) for name in MODEL_NAMES},
        scoring=ScoringOptions(batch_size=8),
        n_boot=50,
        progress=False,
        command="pytest",
    )


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def benchmark(bench_root: Path) -> tuple[Path, ResultsJson]:
    out = bench_root / "out"
    results = run_benchmark(_options(out, bench_root / "cache"))
    assert results is not None
    return out, results


def _scores_csv(path: Path, score: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([int(r["label"]) for r in rows]), np.array([float(r[score]) for r in rows])


@pytest.mark.slow
def test_benchmark_writes_results_figures_and_report(
    benchmark: tuple[Path, dict[str, Any]],
) -> None:
    out, results = benchmark
    assert json.loads((out / RESULTS_FILE).read_text()) == json.loads(json.dumps(results))
    assert list(results["models"]) == list(MODEL_NAMES)
    for figure in FIGURES.values():
        assert (out / "figures" / figure).stat().st_size > 1000, figure
    assert results["image_size"] == SIZE
    assert results["split"] == "test"
    assert results["split_summary"]["test"]["normal"]["images"] == 8
    assert results["references"]["histogram"]["kind"] == "trivial"
    assert results["references"]["sharpness"]["kind"] == "trivial"
    fusion = results["references"]["fusion"]
    assert fusion["kind"] == "fusion" and fusion["members"].count(":") == len(MODEL_NAMES)
    with open(out / "scores" / "references.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([int(r["label"]) for r in rows])
    for name in ("histogram", "sharpness", "fusion", "fusion+histogram"):
        values = np.array([float(r[name]) for r in rows])
        assert results["references"][name]["auroc"] == pytest.approx(metrics.auroc(labels, values))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_results_agree_with_the_per_image_scores(
    name: str, benchmark: tuple[Path, dict[str, Any]]
) -> None:
    out, results = benchmark
    entry = results["models"][name]
    labels, scores = _scores_csv(out / "scores" / f"{name}.csv", entry["score"])
    assert len(labels) == 16 and labels.sum() == 8
    assert entry["image"]["auroc"] == pytest.approx(metrics.auroc(labels, scores), abs=1e-9)
    low, high = entry["image"]["auroc_ci"]
    assert low <= entry["image"]["auroc"] <= high
    assert entry["pixel"] is not None  # synthetic data has masks
    assert 0.0 <= entry["pixel"]["pixel_auroc"] <= 1.0
    assert entry["training"]["epochs"] == 1


@pytest.mark.slow
def test_report_shows_every_model_with_its_numbers(
    benchmark: tuple[Path, dict[str, Any]],
) -> None:
    out, results = benchmark
    text = (out / REPORT_FILE).read_text()
    for name, entry in results["models"].items():
        assert name in text
        assert f"{entry['image']['auroc']:.3f}" in text
    assert len(re.findall(r'src="data:image/png;base64,', text)) == len(FIGURES)
    assert "pytest" in text  # the command that produced it


@pytest.mark.slow
def test_a_second_benchmark_reuses_the_trained_models(
    benchmark: tuple[Path, dict[str, Any]], bench_root: Path
) -> None:
    out, results = benchmark
    weights = {n: (out / "runs" / n / "model.safetensors").stat().st_mtime_ns for n in MODEL_NAMES}
    again = run_benchmark(_options(out, bench_root / "cache"))
    assert again is not None
    for name in MODEL_NAMES:
        assert (out / "runs" / name / "model.safetensors").stat().st_mtime_ns == weights[name]
        assert again["models"][name]["image"]["auroc"] == results["models"][name]["image"]["auroc"]


@pytest.mark.slow
def test_evaluate_on_the_runs_own_split_and_on_external_data(
    benchmark: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, results = benchmark
    run_dir = out / "runs" / "vaegan"
    own = evaluate_run(run_dir, StudyOptions(out=tmp_path / "own", n_boot=20))
    assert own is not None
    assert own["models"]["vaegan"]["image"]["auroc"] == pytest.approx(
        results["models"]["vaegan"]["image"]["auroc"]
    )
    other = DataConfig(
        spec="synthetic:n_train=4,n_val_normal=2,n_test_normal=6,n_test_abnormal=6,seed=9",
        size=48,  # replaced by the run's own size: preprocessing must match training
        cache_dir=str(tmp_path / "cache"),
    )
    external = evaluate_run(run_dir, StudyOptions(out=tmp_path / "ext", n_boot=20), other, True)
    assert external is not None
    assert external["protocol"]["name"] == "external"
    assert external["image_size"] == SIZE
    # every image of the other dataset is test data: 4 + 2 + 6 + 6
    counts = external["split_summary"]["test"]
    assert sum(c["images"] for c in counts.values()) == 18
    assert (tmp_path / "ext" / REPORT_FILE).is_file()


def test_evaluate_draws_the_maps_over_each_radiograph_at_its_own_size(
    benchmark: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = benchmark
    root = tmp_path / "pngs"
    rng = np.random.default_rng(0)
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (90, 60), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{cls[0]}{i}-0001.png")
    data = DataConfig(spec=f"folder:{root}", size=SIZE, cache_dir=str(tmp_path / "cache"))
    options = StudyOptions(out=tmp_path / "ext", n_boot=20)
    assert evaluate_run(out / "runs" / "vaegan", options, data, True) is not None
    figure = tmp_path / "ext" / "figures" / ORIGINALS_FIGURE
    assert figure.is_file()
    assert "Heatmaps on the radiographs" in (tmp_path / "ext" / REPORT_FILE).read_text()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.slow
def test_report_renders_in_headless_chromium_with_every_figure_loaded(
    benchmark: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian package 'chromium')")
    out, _ = benchmark
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        (out / REPORT_FILE).as_uri(),
    ]
    dom = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "HOME": str(tmp_path)},
    ).stdout
    total = re.search(r'data-images-total="(\d+)"', dom)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert total and loaded, "the report's load check did not run"
    assert int(total.group(1)) == len(FIGURES)
    assert int(loaded.group(1)) == int(total.group(1))


@pytest.mark.parametrize(
    ("argv", "models", "preset"),
    [
        (["demo"], model_names(DEMO), "quick"),
        (["demo", "--reference"], model_names(REFERENCE), "paper"),
        (["benchmark", "--models", "vaegan", "--preset", "paper"], ("vaegan",), "paper"),
        (
            ["benchmark", "--models", "bigan", "--reference", "--preset", "quick"],
            model_names(REFERENCE),
            "quick",
        ),
    ],
)
def test_demo_runs_the_best_configuration_and_reference_is_one_flag_away(
    argv: list[str],
    models: tuple[str, ...],
    preset: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    seen: list[BenchmarkOptions] = []
    monkeypatch.setattr(
        "cxr_anomaly.jobs.study.run_benchmark", lambda options: seen.append(options)
    )
    monkeypatch.setattr("cxr_anomaly.cli._print_results", lambda results, out: None)
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    assert seen[0].models == models
    assert seen[0].preset == preset
