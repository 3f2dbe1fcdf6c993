"""ONNX export: the exported graph scores like the trained model, and predict takes it."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from cxr_anomaly.cli import main
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.jobs.export import TOLERANCE, export_onnx
from cxr_anomaly.jobs.predict import ExportedModel, TrainedModel, load_model, run_predict
from cxr_anomaly.jobs.training import train
from cxr_anomaly.runtime.onnx import EXPORT_FILE, ExportError
from tiny import SIZE, tiny_run

EXPORTABLE = ("bigan", "vaegan", "anatpaste")
# Beside each exportable model's tiny run: VAE-GAN scoring its latent Gaussian distance, and
# AnatPaste as its default recipe scores and draws (an in-graph fusion, the mask decoder's map), and
# BiGAN drawing its per-pixel z-scored error.
EXTRA_PARAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "vaegan-latent": ("vaegan", {"latent_scores": True, "default_score": "latent"}),
    "anatpaste-mask-fused": (
        "anatpaste",
        {
            "mask_weight": 1.0,
            "mask_head": "decoder",
            "map_score": "mask",
            "fuse": ["mahalanobis", "mask"],
            "default_score": "fused",
        },
    ),
    "bigan-pixel-z": ("bigan", {"pixel_z_of": "l1", "map_score": "pixel_z"}),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(run folder, export folder) of a tiny trained run of every exportable model."""
    root = tmp_path_factory.mktemp("export")
    setups: dict[str, tuple[str, dict[str, Any]]] = {
        name: (name, {}) for name in EXPORTABLE
    } | EXTRA_PARAMS
    folders = {}
    for label, (name, params) in setups.items():
        run = root / label
        config = tiny_run(name, root / "cache")
        config.model_params.update(params)
        train(config, run, progress=False)
        folders[label] = (run, export_onnx(run).out_dir)
    return folders


def _images(count: int = 12) -> list[np.ndarray]:
    return [make_phantom(SIZE, 500 + i, "nodule" if i % 2 else None).image for i in range(count)]


def _close(exported: np.ndarray, trained: np.ndarray) -> None:
    gap = np.abs(exported - trained)
    assert np.all(gap <= TOLERANCE * (1 + np.abs(trained))), float(gap.max())


@pytest.mark.parametrize("name", [*EXPORTABLE, *EXTRA_PARAMS])
def test_exported_model_scores_like_the_trained_one(
    name: str, exported: dict[str, tuple[Path, Path]]
) -> None:
    run, out = exported[name]
    trained, onnx = load_model(run), load_model(out)
    assert isinstance(trained, TrainedModel) and isinstance(onnx, ExportedModel)
    assert (onnx.name, onnx.size, onnx.score_name) == (trained.name, SIZE, trained.score_name)
    images = _images()
    ours, theirs = trained.predict(images), onnx.predict(images, batch_size=5)
    _close(np.array([p.score for p in theirs]), np.array([p.score for p in ours]))
    for a, b in zip(theirs, ours, strict=True):
        assert a.anomaly_map is not None and b.anomaly_map is not None
        _close(a.anomaly_map, b.anomaly_map)
        assert a.decision == b.decision
        assert a.normal_percentile == pytest.approx(b.normal_percentile, abs=1e-6)
        assert (a.reconstruction is None) == (b.reconstruction is None)
    assert "ExportedModel(model=" in repr(onnx) and f"image_size={SIZE}" in repr(onnx)


def test_an_export_folder_moved_elsewhere_still_predicts(
    exported: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """The weights live inside ``model.onnx``: the folder is all a user needs to copy."""
    out = exported["bigan"][1]
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)
    assert sorted(p.name for p in moved.iterdir()) == [EXPORT_FILE, "model.onnx"]
    images = _images(4)
    before = load_model(out).predict(images)
    shutil.rmtree(out)
    try:
        after = load_model(moved).predict(images)
    finally:
        shutil.copytree(moved, out)
    assert [p.score for p in after] == [p.score for p in before]


def test_export_description_holds_preprocessing_calibration_and_parity(
    exported: dict[str, tuple[Path, Path]],
) -> None:
    run, out = exported["anatpaste"]
    description = json.loads((out / EXPORT_FILE).read_text())
    assert description["model"] == "anatpaste"
    assert description["outputs"] == ["score", "map"]  # no reconstruction
    assert description["preprocessing"] == {
        "image_size": SIZE,
        "intensity": "none",
        "apply_voi_lut": True,
    }
    model_json = json.loads((run / "model.json").read_text())
    assert description["post_processor"] == model_json["post_processor"]
    assert description["parity"]["max_score_difference"] <= TOLERANCE
    assert json.loads((exported["vaegan"][1] / EXPORT_FILE).read_text())["outputs"][-1] == (
        "reconstruction"
    )
    assert load_model(exported["vaegan-latent"][1]).score_name == "latent"


def test_predict_with_the_exported_model_gives_the_same_rows(
    exported: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    from PIL import Image

    run, out = exported["vaegan"]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i, image in enumerate(_images(6)):
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(inputs / f"img{i}.png")
    (inputs / "broken.png").write_bytes(b"not a png")
    rows = {}
    for label, model_dir in (("trained", run), ("onnx", out)):
        report = run_predict(model_dir, [inputs], tmp_path / label)
        assert report is not None and report.n_scored == 6 and report.n_failed == 1
        with open(report.csv_path, newline="") as handle:
            rows[label] = list(csv.DictReader(handle))
    for a, b in zip(rows["onnx"], rows["trained"], strict=True):
        assert (a["path"], a["decision"], a["error"]) == (b["path"], b["decision"], b["error"])
        if b["score"]:
            _close(np.array(float(a["score"])), np.array(float(b["score"])))
            assert (tmp_path / "onnx" / a["overlay"]).is_file()


def test_anoddpm_export_is_refused_with_the_reason(tmp_path: Path) -> None:
    run = tmp_path / "anoddpm"
    train(tiny_run("anoddpm-gaussian", tmp_path / "cache"), run, progress=False)
    with pytest.raises(ExportError, match="partial-diffusion loop"):
        export_onnx(run)
    assert main(["export", str(run)]) == 2
