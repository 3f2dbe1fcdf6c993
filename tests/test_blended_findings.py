"""The second generator of inserted findings (blended in the image domain)."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.data.preprocess import preprocess
from cxr_anomaly.evaluation.yardstick.blended import LEVELS, insert_blended
from cxr_anomaly.evaluation.yardstick.insertions import FINDINGS, insert_finding, smooth_lungs
from cxr_anomaly.evaluation.yardstick.measure import inserted_findings


@pytest.fixture(scope="module")
def chest() -> np.ndarray:
    return make_phantom(128, seed=5).image


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_blended_finding_changes_its_mask(chest: np.ndarray, finding: str) -> None:
    out = insert_blended(chest, finding, "conspicuous", np.random.default_rng(1))
    change = np.abs(out.image - chest)
    assert out.mask.any() and not out.mask.all()
    assert change[out.mask].mean() > 5 * change[~out.mask].mean()
    assert out.image.dtype == np.float32 and 0.0 <= out.image.min() <= out.image.max() <= 1.0


@pytest.mark.parametrize("finding", ["nodule", "consolidation", "effusion"])
def test_blended_opacities_brighten_the_lung(chest: np.ndarray, finding: str) -> None:
    out = insert_blended(chest, finding, "conspicuous", np.random.default_rng(2))
    lungs = smooth_lungs(chest)
    # Soft edges (and the effusion's costophrenic recess) reach a little past the lung found.
    assert (out.mask & lungs).sum() >= 0.6 * out.mask.sum()
    assert (out.image >= chest - 1e-6).all()  # blending towards soft tissue never darkens


def test_blended_pneumothorax_darkens_its_rim(chest: np.ndarray) -> None:
    out = insert_blended(chest, "pneumothorax", "conspicuous", np.random.default_rng(3))
    rim = out.mask & (out.image < chest)
    assert rim.sum() > 0.5 * out.mask.sum()


def test_blended_levels_share_the_draw_and_shrink(chest: np.ndarray) -> None:
    outs = {
        level: insert_blended(chest, "nodule", level, np.random.default_rng(7)) for level in LEVELS
    }
    sums = [np.abs(outs[level].image - chest).sum() for level in LEVELS]
    assert sums[0] > sums[1] > sums[2] > 0
    assert (outs["faint"].mask & ~outs["conspicuous"].mask).sum() == 0


def test_blended_differs_from_the_density_generator(chest: np.ndarray) -> None:
    blended = insert_blended(chest, "nodule", "middle", np.random.default_rng(4))
    density = insert_finding(chest, "nodule", "middle", np.random.default_rng(4))
    assert (blended.mask ^ density.mask).sum() > 0.5 * max(blended.mask.sum(), density.mask.sum())


def test_blended_is_deterministic_and_names_bad_arguments(chest: np.ndarray) -> None:
    a = insert_blended(chest, "foreign_body", "middle", np.random.default_rng(9))
    b = insert_blended(chest, "foreign_body", "middle", np.random.default_rng(9))
    np.testing.assert_array_equal(a.image, b.image)
    with pytest.raises(ValueError, match="unknown finding 'tumour'"):
        insert_blended(chest, "tumour", "middle", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown level"):
        insert_blended(chest, "nodule", "easy", np.random.default_rng(0))
    with pytest.raises(ValueError, match="square"):
        insert_blended(chest[:, :100], "nodule", "middle", np.random.default_rng(0))


def test_inserted_findings_take_the_blended_generator() -> None:
    originals = [make_phantom(128, seed=s).image for s in range(10)]
    reference = np.stack([preprocess(o, 32) for o in originals])

    def sees(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps = np.abs(images[:, 0] - reference)
        return maps.reshape(len(maps), -1).sum(axis=1), maps

    found = inserted_findings(
        {"sees": sees},
        originals,
        [f"p{s}" for s in range(10)],
        32,
        {"sees": "none"},
        n_boot=20,
        levels=("conspicuous",),
        findings=("nodule",),
        generator=insert_blended,
    )
    assert found["sees"]["conspicuous"]["nodule"]["auroc"] > 0.9
