"""DDP on the CPU (gloo): ranks end with identical weights; 2-process scoring equals 1-process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tiny import MODEL_NAMES

pytestmark = pytest.mark.slow  # several processes per test; CI runs them with `make test-slow`

JOB = Path(__file__).with_name("ddp_job.py")


def _run(out: Path, devices: int) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(JOB.parent), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "MASTER_PORT": str(29500 + devices + os.getpid() % 500),
    }
    done = subprocess.run(
        [sys.executable, str(JOB), str(out), str(devices)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        (out / "ddp_job.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    _run(out, 2)
    return out


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_rank_ends_with_identical_weights(name: str, ddp_runs: Path) -> None:
    first = load_file(ddp_runs / name / "rank0.safetensors")
    second = load_file(ddp_runs / name / "rank1.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)
    # The run folder was written once, by rank 0, and trained for real.
    assert (ddp_runs / name / "run" / "model.safetensors").is_file()
    saved = load_file(ddp_runs / name / "run" / "model.safetensors")
    for key in saved:
        torch.testing.assert_close(saved[key], first[key], rtol=0, atol=0, msg=key)


def _scores(path: Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        return {row["sample_id"]: float(row["l1"]) for row in csv.DictReader(handle)}


def test_scoring_with_two_processes_matches_one_process_on_the_same_model(ddp_runs: Path) -> None:
    from cxr_anomaly.data.datamodule import PreparedData
    from cxr_anomaly.evaluation.split_scores import score_split
    from cxr_anomaly.runtime.checkpoint import load_weights
    from tiny import tiny_run

    run_dir = ddp_runs / MODEL_NAMES[0] / "run"
    data = PreparedData(tiny_run(MODEL_NAMES[0], ddp_runs / "cache").data)
    scored = score_split(load_weights(run_dir), data.view("test"))
    two = _scores(ddp_runs / "scores-2.csv")
    # 16 images scored in batches of 3 on 2 ranks: the sampler pads, the padding is removed.
    assert len(two) == 16
    assert list(two) == scored.ids  # same ids, same order
    for sample_id, value in zip(scored.ids, scored.score, strict=True):
        assert two[sample_id] == pytest.approx(value, abs=1e-6)


def test_predict_with_two_processes_matches_one_process(ddp_runs: Path, tmp_path: Path) -> None:
    from cxr_anomaly.jobs.predict import run_predict

    with open(ddp_runs / "predict-2" / "predictions.csv", newline="") as handle:
        two = {row["path"]: row for row in csv.DictReader(handle)}
    report = run_predict(
        ddp_runs / MODEL_NAMES[0] / "run", [ddp_runs / "inputs"], tmp_path, batch_size=3
    )
    assert report is not None
    with open(report.csv_path, newline="") as handle:
        one = {row["path"]: row for row in csv.DictReader(handle)}
    assert list(two) == list(one) and len(one) == 8
    for path, row in one.items():
        assert two[path]["error"] == row["error"]
        if row["score"]:
            assert float(two[path]["score"]) == pytest.approx(float(row["score"]), abs=1e-6)
    assert sum(1 for row in two.values() if row["error"]) == 1
