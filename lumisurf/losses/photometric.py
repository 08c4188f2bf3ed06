"""Photometric losses between rendered and observed colors (sRGB in [0, 1] unless stated)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from lumisurf.losses.reduce import safe_mean
from lumisurf.registry import Registry

# Element-wise residual penalties: fn(pred, target, delta, eps) -> tensor of pred's shape.
PHOTOMETRIC: Registry[Callable[..., Tensor]] = Registry("photometric loss")


@PHOTOMETRIC.register("l1")
def l1(pred: Tensor, target: Tensor, delta: float = 0.1, eps: float = 1e-3) -> Tensor:
    """``|pred - target|``."""
    return (pred - target).abs()


@PHOTOMETRIC.register("l2")
def l2(pred: Tensor, target: Tensor, delta: float = 0.1, eps: float = 1e-3) -> Tensor:
    """``(pred - target)^2``."""
    return (pred - target) ** 2


@PHOTOMETRIC.register("charbonnier")
def charbonnier(pred: Tensor, target: Tensor, delta: float = 0.1, eps: float = 1e-3) -> Tensor:
    """``sqrt((pred - target)^2 + eps^2)`` (smooth L1, as in mip-NeRF 360)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps)


LOG_L1_OFFSET = 1.0 / 64.0  # keeps log finite at black and limits the weight of the darkest pixels


@PHOTOMETRIC.register("log_l1")
def log_l1(pred: Tensor, target: Tensor, delta: float = 0.1, eps: float = 1e-3) -> Tensor:
    """``|log(pred + o) - log(target + o)|``, o = 1/64: a relative error (pred clamped at 0 first)."""
    return (torch.log(pred.clamp_min(0.0) + LOG_L1_OFFSET) - torch.log(target + LOG_L1_OFFSET)).abs()


@PHOTOMETRIC.register("huber")
def huber(pred: Tensor, target: Tensor, delta: float = 0.1, eps: float = 1e-3) -> Tensor:
    """``0.5 d^2`` for ``|d| <= delta``, else ``delta * (|d| - 0.5 delta)`` (torch's huber)."""
    d = (pred - target).abs()
    return torch.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta))


def rgb_loss(
    pred: Tensor,
    target: Tensor,
    kind: Literal["l1", "l2", "charbonnier", "huber", "log_l1"],
    weight: Tensor | None = None,
    delta: float = 0.1,
    eps: float = 1e-3,
) -> Tensor:
    """Mean photometric loss over rays and channels.

    ``pred``, ``target`` ``[n_rays, C]``. ``weight`` ``[n_rays]`` or ``[n_rays, 1]`` (e.g. a mask)
    gives the weighted mean ``sum(w * l) / sum(w)`` of the per-ray channel means (0 if all w = 0).
    No rays give 0 (with a graph).
    """
    per_elem = PHOTOMETRIC.get(kind)(pred, target, delta=delta, eps=eps)
    if weight is None:
        return safe_mean(per_elem)
    n_rays = per_elem.shape[0]  # channels spelled out: reshape(0, -1) is ambiguous
    per_ray = per_elem.reshape(n_rays, math.prod(per_elem.shape[1:])).mean(dim=-1)  # [n_rays]
    w = weight.reshape(-1).to(per_ray.dtype)
    return (w * per_ray).sum() / w.sum().clamp_min(1e-8)


def psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB for signals in [0, 1]: ``-10 log10(mse)`` (mse floored at 1e-10)."""
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def decorrelated_l2(a: Tensor, b: Tensor, target: Tensor) -> Tensor:
    """Mean of (a - t)(b - t) for two independent Monte-Carlo estimates a, b [N, C] of the same pixels: its
    expectation is the squared error of the expected render, (E a - t)^2, without the estimator's variance that
    the squared error of one estimate adds (Azinovic et al. 2019). Can be negative."""
    return ((a - target) * (b - target)).mean()
