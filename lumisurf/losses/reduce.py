"""Reductions for losses over selections that may be empty (no ray hit, no surface point, no foreground)."""

from __future__ import annotations

from torch import Tensor


def safe_mean(x: Tensor) -> Tensor:
    """``x.mean()`` over all elements; for an empty ``x`` a finite 0 that keeps the graph (not NaN = 0/0),
    so ``backward`` still runs and gives zero gradients."""
    return x.mean() if x.numel() > 0 else x.sum() * 0.0
