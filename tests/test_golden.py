"""Golden scores: every model, built from its ``tiny`` preset with a fixed seed and untrained,
gives the stored scores on a fixed input. A refactoring that changes what a model computes
fails here; a deliberate change rewrites ``tests/data/golden_scores.json`` with

    .venv/bin/python tests/test_golden.py --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.models.registry import build_model
from tiny import MODEL_NAMES, SIZE, TINY_PARAMS

GOLDEN = Path(__file__).with_name("data") / "golden_scores.json"
# fp32 convolutions may round differently on other CPUs; a changed computation moves far more.
RELATIVE_TOLERANCE = 1e-4


def _images() -> torch.Tensor:
    """Four fixed images: smooth gradients with a bright square on two of them."""
    ramp = torch.linspace(0.2, 0.8, SIZE)
    base = (ramp[None, :] * ramp[:, None]).expand(4, 1, SIZE, SIZE).clone()
    base[1, :, 8:16, 8:16] = 1.0
    base[3, :, 18:26, 4:12] = 0.95
    base[2] = base[2].flip(-1)
    return base


def scores_of(name: str) -> dict[str, list[float]]:
    """Every score of the untrained model ``name`` (seed 0) on :func:`_images`."""
    torch.manual_seed(0)
    model = build_model(name, TINY_PARAMS[name], TrainConfig(precision="32-true"))
    inference = model.infer(_images())
    return {score: values.tolist() for score, values in inference.scores.items()}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_scores_match_the_golden_values(name: str) -> None:
    stored = json.loads(GOLDEN.read_text())
    if name not in stored:
        pytest.skip(f"no golden scores for {name} yet: python tests/test_golden.py --write")
    golden = stored[name]
    found = scores_of(name)
    assert set(found) == set(golden)
    for score, values in golden.items():
        np.testing.assert_allclose(found[score], values, rtol=RELATIVE_TOLERANCE, err_msg=score)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    GOLDEN.write_text(json.dumps({n: scores_of(n) for n in MODEL_NAMES}, indent=2) + "\n")
    print(f"wrote {GOLDEN}")
