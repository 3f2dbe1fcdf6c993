"""The sharpness fusion kept with a model: the benchmark's definition, and predict reports it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cxr_anomaly.cli import build_parser, main, run_config_from_args
from cxr_anomaly.core.normalise import fuse, zscores_against
from cxr_anomaly.data.datamodule import PreparedData
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.data.preprocess import preprocess
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.jobs.predict import Prediction, TrainedModel, load_model, run_predict
from cxr_anomaly.jobs.study import BenchmarkOptions, StudyOptions, evaluate_run
from cxr_anomaly.jobs.training import train
from cxr_anomaly.postprocess.baselines import SharpnessDistance
from cxr_anomaly.postprocess.calibration import ScoreCalibration
from cxr_anomaly.postprocess.post_processor import PostProcessor
from cxr_anomaly.postprocess.sharpness_fusion import fit_sharpness_fusion, stored_intensity_views
from cxr_anomaly.runtime.checkpoint import CheckpointError
from cxr_anomaly.runtime.inference import infer_arrays
from tiny import SIZE, tiny_run


def _scores(predictions: list[Prediction]) -> list[float]:
    """The predictions' scores, every one of them present."""
    scores: list[float] = []
    for p in predictions:
        assert p.score is not None, p.error
        scores.append(p.score)
    return scores


def _phantoms(count: int, seed: int, blur: float = 0.0) -> np.ndarray:
    images = [make_phantom(SIZE, seed + i).image for i in range(count)]
    return np.stack([ndimage.gaussian_filter(x, blur) if blur else x for x in images])


def test_the_fusion_is_the_mean_of_the_two_z_scores_the_ablation_fuses() -> None:
    rng = np.random.default_rng(0)
    train_images, val, test = _phantoms(20, 0), _phantoms(10, 100), _phantoms(6, 200, blur=1.0)
    val_scores, test_scores = rng.normal(1.0, 0.2, 10), rng.normal(1.5, 0.2, 6)
    fusion = fit_sharpness_fusion([train_images[:7], train_images[7:]], val, val_scores, "l1")
    # As benchmarks/ablation.py computes it: the model's z-score on its normal calibration and
    # the detector (fitted on the training images) z-normalised on the normal validation images.
    detector = SharpnessDistance().fit(train_images)
    model_z = ScoreCalibration.fit(val_scores).zscore(test_scores)
    sharp_z = zscores_against(detector.score(test), detector.score(val))
    expected = fuse([model_z, sharp_z])
    np.testing.assert_allclose(fusion.fused(test_scores, test), expected, rtol=1e-9)
    assert fusion.name == "l1+sharpness"
    # Fitted on the normal validation images: their fused scores average 0 by construction.
    assert np.mean(fusion.fused(val_scores, val)) == pytest.approx(0.0, abs=1e-9)
    # Blurred images lose fine detail: the sharpness half pushes them up.
    assert np.all(sharp_z > 1.0)


def test_the_fusion_survives_json_in_the_post_processor_and_refuses_mismatched_inputs() -> None:
    images = _phantoms(8, 0)
    normal = np.linspace(0, 1, 8)
    fusion = fit_sharpness_fusion([images], images, normal, "mahalanobis")
    plain = PostProcessor({"mahalanobis": ScoreCalibration.fit(normal)}, 1.0, 0.5, n_images=8)
    kept = plain.with_sharpness(fusion, fusion.fused(normal, images))
    back = PostProcessor.from_dict(json.loads(json.dumps(kept.to_dict())))
    assert back.sharpness == fusion
    assert back.reported_score("mahalanobis") == "mahalanobis+sharpness"
    assert set(back.scores) == {"mahalanobis", "mahalanobis+sharpness"}
    assert plain.sharpness is None and plain.reported_score("mahalanobis") == "mahalanobis"
    with pytest.raises(ValueError, match="7 scores for 8"):
        fit_sharpness_fusion([images], images, np.zeros(7), "l1")
    with pytest.raises(ValueError, match="2 scores for 3 images"):
        fusion.fused(np.zeros(2), [images[:1], images[1:3]])


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny AnatPaste on locally normalised images, trained with the sharpness fusion."""
    root = tmp_path_factory.mktemp("sharpness")
    config = tiny_run("anatpaste", root / "cache", fuse_sharpness=True)
    config.data.intensity = "local"
    train(config, root / "run", progress=False)
    return root / "run"


def test_predict_reports_the_fused_score_of_the_stored_intensity_image(fused_run: Path) -> None:
    model = load_model(fused_run)
    assert isinstance(model, TrainedModel)
    assert model.sharpness is not None
    assert model.score_name == f"{model.model_score}+sharpness"
    assert model.metadata.post_processor is not None
    assert model.calibration == model.metadata.post_processor.calibration(model.score_name)
    raw = [make_phantom(80, 300 + i, "opacity" if i % 2 else None).image for i in range(4)]
    predictions = model.predict(raw, batch_size=3)
    images = np.stack([preprocess(x, SIZE, "local") for x in raw])[:, None]
    own = infer_arrays(model.model, images).scores[model.model_score]
    # The sharpness half sees the stored intensities, not the model's locally normalised input.
    stored = np.stack([preprocess(x, SIZE, "none") for x in raw])
    expected = model.sharpness.fused(own, stored)
    # (batches of 3 and of 4 round differently in float32: 1e-6 apart)
    np.testing.assert_allclose(_scores(predictions), expected, rtol=1e-5, atol=1e-5)
    for p in predictions:
        assert p.decision == ("abnormal" if p.score > p.threshold else "normal")  # type: ignore[operator]


def test_the_command_line_path_gives_the_python_api_scores(fused_run: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    images = [make_phantom(72, 400 + i).image for i in range(3)]
    for i, image in enumerate(images):
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(inputs / f"{i}.png")
    (inputs / "broken.png").write_bytes(b"not a png")
    report = run_predict(fused_run, [inputs], tmp_path / "out", batch_size=2)
    assert report is not None and (report.n_scored, report.n_failed) == (3, 1)
    model = load_model(fused_run)
    api = model.predict(sorted(str(p) for p in inputs.glob("[0-9].png")))
    with open(report.csv_path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["score"]]
    scored = {row["path"]: float(row["score"]) for row in rows}
    for prediction in api:
        assert scored[prediction.path] == pytest.approx(prediction.score, rel=1e-5, abs=1e-5)


def test_a_fusion_of_another_score_than_the_models_is_refused(fused_run: Path) -> None:
    model_json = fused_run / "model.json"
    original = model_json.read_text()
    edited = json.loads(original)
    edited["post_processor"]["sharpness"]["score"] = "l1"
    try:
        model_json.write_text(json.dumps(edited))
        with pytest.raises(CheckpointError, match="fusion is of score 'l1'"):
            load_model(fused_run)
    finally:
        model_json.write_text(original)


def test_evaluate_reports_the_fused_score_predict_gives(fused_run: Path, tmp_path: Path) -> None:
    results = evaluate_run(fused_run, StudyOptions(out=tmp_path / "eval", n_boot=10))
    assert results is not None
    model = load_model(fused_run)
    assert isinstance(model, TrainedModel)
    entry = results["models"]["anatpaste"]
    assert entry["score"] == model.score_name
    assert model.model_score in entry["score_variants"]
    with open(tmp_path / "eval" / "scores" / "anatpaste.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    data = PreparedData(model.metadata.data)
    test = data.view("test")
    assert [r["sample_id"] for r in rows] == test.ids
    own = np.array([float(r[model.model_score]) for r in rows])
    stored = stored_intensity_views(data, "test")[0].images()[:, 0]
    np.testing.assert_allclose(
        np.array([float(r[model.score_name]) for r in rows]),
        model.post_processor.reported_values(own, stored),
        atol=1e-6,  # the CSV keeps 8 significant digits
    )


def test_evaluate_compares_with_the_trivial_detectors_at_stored_and_own_intensities(
    fused_run: Path, tmp_path: Path
) -> None:
    results = evaluate_run(fused_run, StudyOptions(out=tmp_path / "eval", n_boot=10))
    assert results is not None
    references = results["references"]
    model = load_model(fused_run)
    assert isinstance(model, TrainedModel)
    data = PreparedData(model.metadata.data)
    stored = data.at_stored_intensity(("train", "test"))
    labels = data.view("test").labels
    for name, source in (("sharpness", stored), ("sharpness@local", data)):
        detector = SharpnessDistance().fit(source.view("train").batches(64))
        expected = metrics.auroc(labels, detector.score(source.view("test").batches(64)))
        assert references[name]["auroc"] == pytest.approx(expected)
        assert references[name]["intensity"] == source.config.intensity
    assert references["histogram"]["intensity"] == "none"
    assert references["histogram@local"]["intensity"] == "local"


def test_the_command_line_flag_reaches_the_run_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[BenchmarkOptions] = []
    monkeypatch.setattr(
        "cxr_anomaly.jobs.study.run_benchmark", lambda options: seen.append(options)
    )
    monkeypatch.setattr("cxr_anomaly.cli._print_results", lambda results, out: None)
    argv = ["benchmark", "--models", "anatpaste", "--fuse-sharpness", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert seen[0].train_overrides["fuse_sharpness"] is True
    args = build_parser().parse_args(["train", "anatpaste", "--out", "x", "--fuse-sharpness"])
    assert run_config_from_args("anatpaste", args).train.fuse_sharpness is True
    args = build_parser().parse_args(["train", "anatpaste", "--out", "x"])
    assert run_config_from_args("anatpaste", args).train.fuse_sharpness is False


def test_an_exported_fused_model_reports_the_same_fused_scores(fused_run: Path) -> None:
    pytest.importorskip("onnxruntime")
    from cxr_anomaly.jobs.export import export_onnx

    exported = load_model(export_onnx(fused_run, fused_run / "onnx").out_dir)
    trained = load_model(fused_run)
    assert exported.score_name == trained.score_name == f"{trained.model_score}+sharpness"
    images = [make_phantom(64, 600 + i, "nodule" if i % 2 else None).image for i in range(5)]
    ours = _scores(trained.predict(images))
    theirs = _scores(exported.predict(images))
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
