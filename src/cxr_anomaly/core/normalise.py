"""The one z-normalisation of scores against their normal distribution."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

ValuesT = TypeVar("ValuesT", np.ndarray, torch.Tensor)


def zscore(values: ValuesT, mean: Any, std: Any) -> ValuesT:
    """``(values - mean) / std`` (arrays or tensors), a spread of 0 taken as 1: the one
    z-normalisation of scores against their normal distribution (fusions, calibration)."""
    return (values - mean) / (std if std > 0 else 1.0)
