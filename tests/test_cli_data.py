"""The data commands of the CLI: ``split`` (counts per split and class) and ``prepare``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cxr_anomaly.cli import main
from cxr_anomaly.data.splits import read_split_csv


def _split_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["-q", "split", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _patients(summary: dict[str, Any], split: str) -> dict[str, int]:
    return {cls: counts["patients"] for cls, counts in summary["splits"].get(split, {}).items()}


def _images(summary: dict[str, Any], split: str) -> dict[str, int]:
    return {cls: counts["images"] for cls, counts in summary["splits"].get(split, {}).items()}


def test_split_json_rsna_seed(rsna_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = f"rsna:{rsna_dir / 'labels'}"
    summary = _split_json(capsys, "--data", data)
    assert summary["data"] == data
    assert summary["protocol"]["name"] == "seed" and summary["protocol"]["description"]
    assert summary["seed"] == 0
    assert set(summary["splits"]) == {"train", "val_normal", "test"}
    train, val_normal = _patients(summary, "train"), _patients(summary, "val_normal")
    assert set(train) == set(val_normal) == {"Normal"}
    assert train["Normal"] + val_normal["Normal"] in (6195, 6196)
    test = _patients(summary, "test")
    assert test == {
        "Lung Opacity": 6012,
        "No Lung Opacity / Not Normal": 11821,
        "Normal": 8851 - train["Normal"] - val_normal["Normal"],
    }
    # One image per RSNA patient.
    for split in summary["splits"]:
        assert _images(summary, split) == _patients(summary, split)


def test_split_json_rsna_medianomaly(rsna_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = _split_json(
        capsys, "--data", f"rsna:{rsna_dir / 'labels'}", "--protocol", "medianomaly"
    )
    assert summary["protocol"]["name"] == "medianomaly"
    trained = _patients(summary, "train")["Normal"] + _patients(summary, "val_normal")["Normal"]
    assert trained == 3851
    assert _patients(summary, "test") == {"Normal": 1000, "Lung Opacity": 1000}


def test_split_seed_option_and_manifest_file(
    rsna_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = f"rsna:{rsna_dir / 'labels'}"
    default, other = tmp_path / "default.csv", tmp_path / "seed1.csv"
    assert main(["-q", "split", "--data", data, "--out", str(default)]) == 0
    table = capsys.readouterr().out
    assert "train" in table and "Lung Opacity" in table
    summary = _split_json(capsys, "--data", data, "--split-seed", "1", "--out", str(other))
    assert summary["seed"] == 1
    a, b = read_split_csv(default), read_split_csv(other)
    assert len(a) == len(b) == 26684
    assert a != b
    assert sum(v == "train" for v in a.values()) == sum(v == "train" for v in b.values())
    assert sum(v == "train" for v in b.values()) == _patients(summary, "train")["Normal"]


def test_split_json_zhanglab_folder(zhanglab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = _split_json(capsys, "--data", f"folder:{zhanglab_dir}")
    assert summary["protocol"]["name"] == "holdout"
    assert set(summary["splits"]) == {"train", "val_normal", "val", "test"}
    totals: dict[str, int] = {}
    for split in summary["splits"]:
        for cls, n in _images(summary, split).items():
            totals[cls] = totals.get(cls, 0) + n
    assert totals == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert set(_images(summary, "train")) == {"NORMAL"}
    assert set(_images(summary, "test")) == {"NORMAL", "PNEUMONIA"}
    # Several images per patient: fewer patients than images.
    assert _patients(summary, "test")["PNEUMONIA"] < _images(summary, "test")["PNEUMONIA"]


def test_split_table_for_synthetic_data(capsys: pytest.CaptureFixture[str]) -> None:
    data = "synthetic:n_train=8,n_val_normal=2,n_test_normal=3,n_test_abnormal=6"
    assert main(["-q", "split", "--data", data]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("protocol default:")
    assert lines[1].split() == ["split", "class", "patients", "images"]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[2:]}
    assert rows[("train", "normal")] == ["8", "8"]
    assert rows[("val_normal", "normal")] == ["2", "2"]
    assert rows[("test", "normal")] == ["3", "3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "synthetic", "--protocol", "bogus"], "unknown protocol 'bogus'.*default"),
        (["--data", "nifti:/x"], "unknown data spec"),
        (["--data", "folder:/nonexistent/folder"], "image folder not found"),
        (["--data", "rsna:/nonexistent/rsna"], "RSNA folder not found"),
        (["--data", "synthetic:n_trian=3"], "n_trian"),
        (["--data", "synthetic", "--size", "8"], "between 32 and 256"),
    ],
)
def test_split_user_errors_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["-q", "split", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.search(message, captured.err), captured.err
    assert "Traceback" not in captured.err


def test_rsna_unknown_protocol_lists_the_choices(
    rsna_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["-q", "split", "--data", f"rsna:{rsna_dir / 'sample'}", "--protocol", "Seed"]
    assert main(args) == 2
    err = capsys.readouterr().err
    for name in ("seed", "medianomaly", "opacity", "not-normal", "external"):
        assert name in err


# -- prepare --------------------------------------------------------------------------------------


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for cls, n in (("NORMAL", 10), ("PNEUMONIA", 6)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            pixels = np.full((50, 50), 10 * i + (0 if cls == "NORMAL" else 120), np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{cls[0]}{i:02d}-0001.png")
    return root


def _report(out: str) -> tuple[int, int, int]:
    match = re.search(r"(\d+) prepared, (\d+) reused, (\d+) failed", out)
    assert match is not None, out
    return int(match[1]), int(match[2]), int(match[3])


def test_prepare_prints_the_table_and_reuses_the_cache(
    png_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CXR_ANOMALY_CACHE", str(tmp_path / "cache"))
    args = ["-q", "prepare", "--data", f"folder:{png_folder}", "--size", "32", "--workers", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "protocol holdout" in out
    assert re.search(r"^train\s+NORMAL\s+\d+\s+\d+$", out, re.MULTILINE)
    assert re.search(r"^test\s+PNEUMONIA\s+\d+\s+\d+$", out, re.MULTILINE)
    assert _report(out) == (16, 0, 0)
    caches = list((tmp_path / "cache").iterdir())
    assert len(caches) == 1 and caches[0].name.startswith("folder-32px-")
    assert str(caches[0]) in out

    assert main(args) == 0
    assert _report(capsys.readouterr().out) == (0, 16, 0)
    # --cache-dir wins over the environment.
    assert main([*args, "--cache-dir", str(tmp_path / "other")]) == 0
    assert _report(capsys.readouterr().out) == (16, 0, 0)
    assert (tmp_path / "other").is_dir()


def test_prepare_exits_non_zero_when_images_fail(
    png_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (png_folder / "PNEUMONIA" / "broken-0001.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    args = ["-q", "prepare", "--data", f"folder:{png_folder}", "--cache-dir", str(tmp_path)]
    assert main([*args, "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert _report(captured.out) == (17, 0, 1)
    assert "failed: PNEUMONIA/broken-0001.png" in captured.err
    # The failure is remembered, and reported again without redoing the work.
    assert main([*args, "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert _report(captured.out) == (0, 17, 1)
    assert "broken-0001.png" in captured.err


def test_prepare_rsna_sample(
    rsna_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["-q", "prepare", "--data", f"rsna:{rsna_dir / 'sample'}", "--size", "64"]
    assert main([*args, "--cache-dir", str(tmp_path), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert _report(out) == (16, 0, 0)
    assert "Lung Opacity" in out and "No Lung Opacity / Not Normal" in out


def test_prepare_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = "synthetic:n_train=3,n_val_normal=1,n_test_normal=1,n_test_abnormal=2"
    args = ["-q", "prepare", "--data", data, "--cache-dir", str(tmp_path), "--workers", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert _report(out) == (7, 0, 0)
    assert re.search(r"^test\s+normal\s+1\s+1$", out, re.MULTILINE)
