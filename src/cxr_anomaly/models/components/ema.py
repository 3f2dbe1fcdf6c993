"""Exponential moving average (EMA) of a network's weights, used at test time."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """An EMA copy of a network: parameters and floating-point buffers (BatchNorm statistics).

    With ``warmup`` the decay starts low and grows as ``(1 + n) / (10 + n)`` up to ``decay``,
    so that short runs are not dominated by the random initial weights. The copy is a registered
    submodule, so it travels in the state dict; under DDP the weights it averages are the same
    on every rank, so every rank's EMA is identical too.
    """

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(module).requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.steps: torch.Tensor
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        steps = int(self.steps.item())
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + steps) / (10 + steps))

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        """One EMA step of this copy towards the current weights of ``source``."""
        weight = 1.0 - self.current_decay()
        for ema_param, param in zip(self.module.parameters(), source.parameters(), strict=True):
            ema_param.lerp_(param.detach().to(ema_param.dtype), weight)
        for ema_buffer, buffer in zip(self.module.buffers(), source.buffers(), strict=True):
            if ema_buffer.is_floating_point():
                ema_buffer.lerp_(buffer.to(ema_buffer.dtype), weight)
            else:
                ema_buffer.copy_(buffer)
        self.steps.add_(1)
