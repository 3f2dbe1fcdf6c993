"""The reference side at which sizes in pixels are given, and scaling them to other sides."""

from __future__ import annotations

REFERENCE_SIDE = 64
"""Sizes given in pixels (blur and smoothing sigmas) mean pixels at 64x64 and scale with the
image side, so that a setting means the same at every size."""


def at_side(pixels: float, side: int) -> float:
    """``pixels`` given at :data:`REFERENCE_SIDE`, at an image side of ``side``."""
    return pixels * side / REFERENCE_SIDE
