"""benchmarks/diagnose_shift.py: the lung fields' framing follows the lungs when they move."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from cxr_anomaly.data.phantoms import make_phantom


@pytest.fixture(scope="module")
def diagnose() -> ModuleType:
    return load_benchmark("diagnose_shift")


def test_lung_framing_moves_with_the_lungs(diagnose: ModuleType) -> None:
    images = np.stack([make_phantom(64, seed=seed).image for seed in range(4)])
    # The same images moved down by 4 rows, the top row repeated into the gap.
    moved = np.concatenate([np.repeat(images[:, :1], 4, axis=1), images[:, :-4]], axis=1)
    before, after = diagnose.lung_framing(images), diagnose.lung_framing(moved)
    assert before["lungs_found"] == after["lungs_found"] == 1.0
    assert after["lung_top"] - before["lung_top"] == pytest.approx(4 / 64, abs=1 / 64)
    assert after["lung_bottom"] - before["lung_bottom"] == pytest.approx(4 / 64, abs=1 / 64)
    assert after["lung_fraction"] == pytest.approx(before["lung_fraction"], rel=0.1)
