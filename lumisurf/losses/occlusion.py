"""NeRO occlusion loss: the occlusion MLP's prediction against the probability marched through the SDF."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def occlusion_loss(pred: Tensor, target: Tensor, beta: float = 0.0) -> Tensor:
    """Mean over points of ``|pred - target|`` (NeRO: L1), or smooth L1 with transition ``beta`` > 0.

    ``pred`` ``[M, 1]`` (the occlusion MLP's unclamped output), ``target`` ``[M, 1]`` in [0, 1], detached
    here. Returns a scalar (0 for M = 0).
    """
    target = target.detach().to(pred.dtype)
    if pred.numel() == 0:
        return pred.sum() * 0.0
    if beta > 0:
        return F.smooth_l1_loss(pred, target, beta=beta)
    return (pred - target).abs().mean()
