"""Combining scores that live on different scales: z-normalise on normal images, then average.

Every model's calibration (``model.json``) holds the mean and spread of each of its scores on
the normal validation images, never on a test split. A score becomes a z-score against that
distribution; a fusion is the mean of its members' z-scores, and the members' disagreement (the
standard deviation of their z-scores) is one more score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cxr_anomaly.core.normalise import zscore
from cxr_anomaly.postprocess.calibration import calibration_for

RULE = "mean of z-scores (each z-normalised on the normal validation images)"


def zscores(values: np.ndarray, calibration: dict[str, Any], score: str) -> np.ndarray:
    """``values`` of ``score`` as z-scores against the stored normal-validation distribution."""
    return np.asarray(calibration_for(calibration, score).zscore(values), dtype=np.float64)


def zscores_against(values: np.ndarray, normal_values: np.ndarray) -> np.ndarray:
    """``values`` as z-scores against scores of normal images computed on the spot."""
    spread = float(np.std(normal_values, ddof=1)) if len(normal_values) > 1 else 0.0
    return zscore(values, float(np.mean(normal_values)), spread)


def fuse(members: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the members' z-scores."""
    if not members:
        raise ValueError("a fusion needs at least one member")
    return np.mean(np.stack(members), axis=0)


def disagreement(members: Sequence[np.ndarray]) -> np.ndarray:
    """The standard deviation of the members' z-scores (0 for a single member)."""
    if len(members) < 2:
        return np.zeros_like(members[0])
    return np.std(np.stack(members), axis=0, ddof=1)
