"""The yardstick: findings inserted into radiographs, the fixed halves, the measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.data.preprocess import preprocess
from cxr_anomaly.data.records import Sample
from cxr_anomaly.evaluation.yardstick.halves import HALVES, draw_halves, read_halves, write_halves
from cxr_anomaly.evaluation.yardstick.insertions import (
    FINDINGS,
    LEVELS,
    insert_finding,
    smooth_lungs,
    to_density,
    to_image,
)
from cxr_anomaly.evaluation.yardstick.measure import inserted_findings, macro_gain


@pytest.fixture(scope="module")
def chest() -> np.ndarray:
    return make_phantom(128, seed=5).image


def test_density_round_trip(chest: np.ndarray) -> None:
    np.testing.assert_allclose(to_image(to_density(chest)), chest, atol=1e-5)


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_finding_changes_its_mask_and_little_else(chest: np.ndarray, finding: str) -> None:
    out = insert_finding(chest, finding, "conspicuous", np.random.default_rng(1))
    change = np.abs(to_density(out.image) - to_density(chest))
    assert out.mask.any() and not out.mask.all()
    assert change[out.mask].mean() > 5 * change[~out.mask].mean()
    # Outside the mask only soft edges remain (the pneumothorax's rim fades in over its width).
    assert change[~out.mask].max() <= 0.5 * change.max() + 1e-3


@pytest.mark.parametrize("finding", ["nodule", "consolidation", "effusion"])
def test_opacities_sit_in_the_lungs_and_brighten(chest: np.ndarray, finding: str) -> None:
    out = insert_finding(chest, finding, "conspicuous", np.random.default_rng(2))
    lungs = smooth_lungs(chest)
    assert (out.mask & lungs).sum() >= 0.8 * out.mask.sum()  # soft edges reach past the lung
    assert (out.image - chest)[out.mask].mean() > 0


def test_pneumothorax_darkens_its_rim(chest: np.ndarray) -> None:
    out = insert_finding(chest, "pneumothorax", "conspicuous", np.random.default_rng(3))
    assert (out.image - chest)[out.mask].mean() < 0


def test_levels_share_the_draw_and_shrink(chest: np.ndarray) -> None:
    changes = {}
    for level in LEVELS:
        out = insert_finding(chest, "nodule", level, np.random.default_rng(7))
        changes[level] = (np.abs(out.image - chest).sum(), out.mask)
    sums = [changes[level][0] for level in LEVELS]
    assert sums[0] > sums[1] > sums[2] > 0
    # Same place: the fainter masks lie inside the most conspicuous one.
    assert (changes["faint"][1] & ~changes["conspicuous"][1]).sum() == 0


def test_insertion_is_deterministic(chest: np.ndarray) -> None:
    a = insert_finding(chest, "foreign_body", "middle", np.random.default_rng(9))
    b = insert_finding(chest, "foreign_body", "middle", np.random.default_rng(9))
    np.testing.assert_array_equal(a.image, b.image)


def test_bad_arguments_are_named(chest: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown finding 'tumour'"):
        insert_finding(chest, "tumour", "middle", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown level"):
        insert_finding(chest, "nodule", "easy", np.random.default_rng(0))
    with pytest.raises(ValueError, match="square"):
        insert_finding(chest[:, :100], "nodule", "middle", np.random.default_rng(0))


def _samples() -> list[Sample]:
    out = []
    for p in range(40):
        label = int(p >= 20)
        for k in range(1 + p % 3):
            out.append(Sample(f"img{p}-{k}", f"patient{p}", label, "x"))
    return out


def test_halves_keep_patients_whole_and_classes_balanced(tmp_path: Path) -> None:
    samples = _samples()
    halves = draw_halves(samples, seed=0)
    for p in {s.patient_id for s in samples}:
        assert len({halves[s.sample_id] for s in samples if s.patient_id == p}) == 1
    for label in (0, 1):
        counts = [
            sum(1 for s in samples if s.label == label and halves[s.sample_id] == h) for h in HALVES
        ]
        assert abs(counts[0] - counts[1]) <= 3  # at most one patient's images apart
    path = write_halves(tmp_path / "halves.csv", samples, halves)
    assert read_halves(path) == halves


def test_a_bad_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("sample_id,patient_id,label,half\na,p,0,train\n")
    with pytest.raises(ValueError, match="unknown half 'train'"):
        read_halves(path)
    path.write_text("sample_id,half\na,choose\n")
    with pytest.raises(ValueError, match="columns"):
        read_halves(path)


def test_inserted_findings_rank_a_detector_that_sees_them() -> None:
    originals = [make_phantom(128, seed=s).image for s in range(12)]
    patients = [f"p{s}" for s in range(12)]
    reference = np.stack([preprocess(o, 32) for o in originals])  # as a 32 px scorer sees them

    def sees(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps = np.abs(images[:, 0] - reference)
        return maps.reshape(len(maps), -1).sum(axis=1), maps

    def blind(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(images)), np.zeros(0, np.float32)

    found = inserted_findings(
        {"sees": sees, "blind": blind},
        originals,
        patients,
        32,
        {"sees": "none", "blind": "none"},
        n_boot=50,
        levels=("conspicuous",),
        findings=("nodule", "consolidation"),
    )
    assert found["sees"]["conspicuous"]["macro"]["auroc"] > 0.9
    nodule = found["sees"]["conspicuous"]["nodule"]
    assert nodule["pointing"] > 0.5
    assert np.mean(nodule["pointing_hits"]) == pytest.approx(nodule["pointing"])
    low, high = nodule["pointing_ci"]
    assert low <= nodule["pointing"] <= high
    assert len(nodule["pointing_hits"]) == len(originals)  # every image with the finding
    macro = found["sees"]["conspicuous"]["macro"]
    assert macro["pointing_ci"][0] <= macro["pointing"] <= macro["pointing_ci"][1]
    low, high = macro["pixel_ap_ci"]
    assert 0 < low < high <= 1
    assert low - 0.05 <= macro["pixel_ap"] <= high + 0.05  # binned ties: close, not equal
    low, high = macro["best_dice_ci"]
    assert 0 < low <= macro["best_dice"] + 0.05 and macro["best_dice"] - 0.05 <= high <= 1
    assert found["blind"]["conspicuous"]["macro"]["auroc"] == pytest.approx(0.5)
    assert "pointing" not in found["blind"]["conspicuous"]["nodule"]


def test_macro_gain_is_paired_and_zero_for_the_same_run() -> None:
    rng = np.random.default_rng(0)
    n = 30
    patients = [f"p{i // 2}" for i in range(n)]  # two images per patient

    def run(signal: float) -> dict[str, Any]:
        untouched = rng.normal(size=n)
        return {
            "untouched": untouched.tolist(),
            "middle": {
                f: {"scores": (untouched + signal + 0.5 * rng.normal(size=n)).tolist()}
                for f in ("nodule", "effusion")
            },
        }

    weak, strong = run(0.2), run(2.0)
    same, (low, high) = macro_gain([weak], [weak], "middle", patients, n_boot=100)
    assert same == 0.0 and low == high == 0.0
    gain, (low, high) = macro_gain([strong], [weak], "middle", patients, n_boot=200)
    assert gain > 0.2 and 0 < low < gain < high
