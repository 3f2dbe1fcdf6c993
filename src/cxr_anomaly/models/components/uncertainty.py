"""Uncertainty-normalised reconstruction error (Mao et al., MICCAI 2020).

A decoder that also predicts a per-pixel log-variance ``s`` is trained with the Gaussian
negative log-likelihood ``mean(exp(-s) e^2 + s)``; at test time the error ``e`` is normalised by
that predicted uncertainty, ``exp(-s) e^2``, so that pixels the model always reconstructs
poorly on normal images (edges, fine texture) stop dominating the score.
"""

from __future__ import annotations

import torch

from cxr_anomaly.models.components.base import Inference

LOGVAR_LIMIT = 10.0
SCORE_NAME = "uncertainty"


def split_logvar(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A decoder's raw output (N, 1 or 2, H, W) -> (image in [-1, 1], log-variance or None)."""
    logvar = out[:, 1:2].clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT) if out.shape[1] > 1 else None
    return torch.tanh(out[:, :1]), logvar


def heteroscedastic_loss(error: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``mean(exp(-s) e^2 + s)``: the Gaussian negative log-likelihood up to constants."""
    return (torch.exp(-logvar) * error.square() + logvar).mean()


def add_uncertainty_score(result: Inference, error: torch.Tensor, logvar: torch.Tensor) -> None:
    """Add the ``uncertainty`` map ``exp(-s) e^2`` and its image mean to ``result``."""
    amap = torch.exp(-logvar.float()) * error.float().square()
    result.maps[SCORE_NAME] = amap
    result.scores[SCORE_NAME] = amap.flatten(1).mean(1)
