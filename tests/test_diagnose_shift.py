"""benchmarks/diagnose_shift.py: the lung fields' framing follows the lungs when they move."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cxr_anomaly.data.phantoms import make_phantom

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "diagnose_shift.py"


@pytest.fixture(scope="module")
def diagnose() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diagnose_shift", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["diagnose_shift"] = module
    spec.loader.exec_module(module)
    return module


def test_lung_framing_moves_with_the_lungs(diagnose: ModuleType) -> None:
    images = np.stack([make_phantom(64, seed=seed).image for seed in range(4)])
    # The same images moved down by 4 rows, the top row repeated into the gap.
    moved = np.concatenate([np.repeat(images[:, :1], 4, axis=1), images[:, :-4]], axis=1)
    before, after = diagnose.lung_framing(images), diagnose.lung_framing(moved)
    assert before["lungs_found"] == after["lungs_found"] == 1.0
    assert after["lung_top"] - before["lung_top"] == pytest.approx(4 / 64, abs=1 / 64)
    assert after["lung_bottom"] - before["lung_bottom"] == pytest.approx(4 / 64, abs=1 / 64)
    assert after["lung_fraction"] == pytest.approx(before["lung_fraction"], rel=0.1)
