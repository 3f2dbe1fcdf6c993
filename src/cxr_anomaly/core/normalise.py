"""Scores on different scales made comparable, and combined: the one z-score and one fusion.

A score becomes a z-score against its distribution on normal images (never a test split); a
fusion is the mean of its members' z-scores. The model-level fusion (``ModelConfig.fuse``, maps
included, inside the graph), the sharpness fusion kept with a model and the studies' fusions of
several models all go through :func:`zscore` and :func:`fuse`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

ValuesT = TypeVar("ValuesT", np.ndarray, torch.Tensor)

FUSION_RULE = "mean of z-scores (each z-normalised on the normal validation images)"


def zscore(values: ValuesT, mean: Any, std: Any) -> ValuesT:
    """``(values - mean) / std`` (arrays or tensors), a spread of 0 taken as 1.

    A tensor spread is replaced without a Python branch, so the z-score stays one graph that
    ``torch.export`` can trace."""
    if isinstance(std, torch.Tensor):
        return (values - mean) / torch.where(std > 0, std, torch.ones_like(std))
    return (values - mean) / (std if std > 0 else 1.0)


def zscores_against(values: np.ndarray, normal_values: np.ndarray) -> np.ndarray:
    """``values`` as z-scores against scores of normal images computed on the spot."""
    spread = float(np.std(normal_values, ddof=1)) if len(normal_values) > 1 else 0.0
    return zscore(np.asarray(values, np.float64), float(np.mean(normal_values)), spread)


def fuse(members: Sequence[ValuesT]) -> ValuesT:
    """The mean of the members' z-scores (arrays or tensors of one shape)."""
    if not members:
        raise ValueError("a fusion needs at least one member")
    if isinstance(members[0], torch.Tensor):
        return torch.stack(list(members)).mean(dim=0)
    return np.mean(np.stack(members), axis=0)


def disagreement(members: Sequence[np.ndarray]) -> np.ndarray:
    """The standard deviation of the members' z-scores (0 for a single member)."""
    if len(members) < 2:
        return np.zeros_like(members[0])
    return np.std(np.stack(members), axis=0, ddof=1)
