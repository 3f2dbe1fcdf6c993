"""Predict on new files: calibrated decisions, overlays, bad input, resume, preprocessing parity."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from cxr_anomaly import load_model
from cxr_anomaly.cli import main
from cxr_anomaly.core.config import DataConfig
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.jobs.predict import RESULT_FILE, find_inputs, run_predict
from cxr_anomaly.jobs.study import StudyOptions, evaluate_run
from cxr_anomaly.jobs.training import train
from tiny import tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict")
    out = root / "run"
    train(tiny_run("vaegan", root / "cache"), out, progress=False)
    return out


def _png(path: Path, image: np.ndarray, bits: int = 8) -> Path:
    if bits == 16:
        Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(path)
    else:
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path)
    return path


def _dicom(path: Path, image: np.ndarray, transfer_syntax: UID = ExplicitVRLittleEndian) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = path.stem
    ds.Modality = "CR"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    raw = np.round(image * 4095).astype(np.uint16).tobytes()
    # A compressed syntax with raw bytes in one fragment: a file that lies about its encoding.
    ds.PixelData = raw if transfer_syntax == ExplicitVRLittleEndian else encapsulate([raw])
    ds.save_as(path, enforce_file_format=True)
    return path


def _good_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        _png(folder / "normal.png", make_phantom(64, 1).image),
        _png(folder / "nodule16.png", make_phantom(96, 2, "nodule").image, bits=16),
        _dicom(folder / "patient7.dcm", make_phantom(128, 3, "opacity").image),
    ]
    (folder / "sub").mkdir(exist_ok=True)
    files.append(_png(folder / "sub" / "deep.png", make_phantom(48, 4).image))
    return files


def _bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good_dicom = _dicom(folder / "src.dcm", make_phantom(64, 5).image)
    data = good_dicom.read_bytes()
    good_dicom.unlink()
    bad = {
        "truncated": folder / "truncated.dcm",
        "wrong_syntax": folder / "wrong_syntax.dcm",
        "text": folder / "notes.dcm",
        "empty": folder / "empty.png",
        "tiny": folder / "tiny.png",
        "colour": folder / "colour.jpg",
        "enormous": folder / "enormous.png",
    }
    bad["truncated"].write_bytes(data[: len(data) // 2])
    _dicom(bad["wrong_syntax"], make_phantom(64, 6).image, transfer_syntax=JPEGBaseline8Bit)
    bad["text"].write_text("this is a radiology report, not an image\n")
    bad["empty"].write_bytes(b"")
    Image.new("L", (1, 1), 128).save(bad["tiny"])
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(bad["colour"])
    Image.new("1", (10_000, 6_000), 0).save(bad["enormous"])  # 60 megapixels, a tiny file
    return bad


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def test_find_inputs_expands_folders_globs_and_keeps_missing_paths(tmp_path: Path) -> None:
    files = _good_files(tmp_path / "in")
    found = find_inputs([tmp_path / "in", str(tmp_path / "in" / "*.png"), tmp_path / "nope.dcm"])
    assert set(found) == set(files) | {tmp_path / "nope.dcm"}


def test_good_files_are_scored_and_bad_ones_reported(run_dir: Path, tmp_path: Path) -> None:
    good = _good_files(tmp_path / "mixed")
    bad = _bad_files(tmp_path / "mixed")
    clean_dir = tmp_path / "clean"
    for path in good:
        target = clean_dir / path.relative_to(tmp_path / "mixed")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)

    code = main(
        ["-q", "predict", str(run_dir), str(tmp_path / "mixed"), "--out", str(tmp_path / "out")]
    )
    assert code == 1  # some files failed
    rows = _rows(tmp_path / "out" / RESULT_FILE)
    assert len(rows) == len(good) + len(bad)
    clean = run_predict(run_dir, [clean_dir], tmp_path / "clean_out")
    assert clean is not None
    assert clean.n_failed == 0
    clean_rows = _rows(clean.csv_path)
    for path in good:
        row = rows[str(path)]
        twin = clean_rows[str(clean_dir / path.relative_to(tmp_path / "mixed"))]
        assert row["error"] == ""
        assert row["score"] == twin["score"]  # identical to a clean run
        assert row["decision"] in {"normal", "abnormal"}
        assert 0.0 <= float(row["normal_percentile"]) <= 100.0
        assert float(row["input_distance"]) >= 0.0
        assert row["out_of_distribution"] in {"yes", "no"}
        assert (tmp_path / "out" / row["overlay"]).is_file()
    assert rows[str(tmp_path / "mixed" / "patient7.dcm")]["patient_id"] == "patient7"
    expected = {
        "truncated": "pixel data",
        "wrong_syntax": "decode",
        "text": "not a DICOM",
        "empty": "empty",
        "tiny": "small",
        "colour": "colour",
        "enormous": "enormous",
    }
    for kind, path in bad.items():
        row = rows[str(path)]
        assert row["error"], kind
        assert expected[kind].lower() in row["error"].lower(), (kind, row["error"])
        assert row["score"] == "" and row["overlay"] == ""


def test_an_interrupted_run_resumes_without_redoing_finished_files(
    run_dir: Path, tmp_path: Path
) -> None:
    good = _good_files(tmp_path / "in")
    first = run_predict(run_dir, [tmp_path / "in"], tmp_path / "out", batch_size=2)
    assert first is not None
    final = tmp_path / "out" / RESULT_FILE
    rows = _rows(final)
    # Simulate a run interrupted after its first batch: only a partial file exists.
    partial = tmp_path / "out" / "predictions.partial.csv"
    shutil.move(final, partial)
    kept = list(rows)[:2]
    with open(partial, newline="") as handle:
        lines = [r for r in csv.DictReader(handle) if r["path"] in kept]
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    again = run_predict(run_dir, [tmp_path / "in"], tmp_path / "out", batch_size=2)
    assert again is not None
    assert first.n_inputs == again.n_inputs == len(good)
    assert again.n_resumed == 2
    assert _rows(final) == rows
    assert not partial.exists()


def test_python_api_takes_paths_and_arrays(run_dir: Path, tmp_path: Path) -> None:
    model = load_model(run_dir)
    image = make_phantom(64, 11, "cardiomegaly").image
    path = _png(tmp_path / "x.png", image, bits=16)
    from_path, from_array, missing = model.predict([path, image, tmp_path / "missing.png"])
    assert from_path.ok and from_array.ok and not missing.ok
    assert from_path.score == pytest.approx(from_array.score, abs=1e-6)
    assert from_path.anomaly_map is not None and from_path.anomaly_map.shape == (32, 32)
    assert "not found" in (missing.error or "")
    # Noise is unlike every normal calibration image: flagged, whatever its score says.
    noise = np.random.default_rng(0).random((64, 64))
    assert model.predict([noise])[0].out_of_distribution is True
    assert from_path.input_distance is not None and np.isfinite(from_path.input_distance)
    strict = model.predict([path], specificity=0.99)[0]
    assert strict.threshold is not None and strict.threshold >= from_path.threshold  # type: ignore[operator]


def test_predict_and_evaluate_give_the_same_score(run_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "normal").mkdir(parents=True)
    (folder / "abnormal").mkdir(parents=True)
    files = [
        _png(folder / "normal" / f"n{i}.png", make_phantom(80, 20 + i).image) for i in range(3)
    ]
    files += [
        _dicom(folder / "abnormal" / f"a{i}.dcm", make_phantom(100, 30 + i, "nodule").image)
        for i in range(3)
    ]
    data = DataConfig(spec=f"folder:{folder}", cache_dir=str(tmp_path / "cache"))
    evaluate_run(run_dir, StudyOptions(out=tmp_path / "eval", n_boot=10), data, external=True)
    with open(tmp_path / "eval" / "scores" / "vaegan.csv", newline="") as handle:
        evaluated = {row["sample_id"]: float(row["l1"]) for row in csv.DictReader(handle)}
    report = run_predict(run_dir, [folder], tmp_path / "pred")
    assert report is not None
    predicted = _rows(report.csv_path)
    assert len(evaluated) == len(files) == len(predicted)
    for path in files:
        sample_id = path.relative_to(folder).as_posix()
        assert float(predicted[str(path)]["score"]) == pytest.approx(evaluated[sample_id], abs=1e-6)


def test_the_real_rsna_sample(run_dir: Path, rsna_dir: Path, tmp_path: Path) -> None:
    report = run_predict(run_dir, [rsna_dir / "sample" / "stage_2_train_images"], tmp_path / "o")
    assert report is not None
    rows = _rows(report.csv_path)
    assert report.n_inputs == 16 and report.n_failed == 0
    for row in rows.values():
        assert np.isfinite(float(row["score"]))
        assert (tmp_path / "o" / row["overlay"]).is_file()
        assert row["patient_id"] == Path(row["path"]).stem
