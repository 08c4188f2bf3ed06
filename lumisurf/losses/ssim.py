"""Differentiable SSIM map (Wang et al. 2004): the S3IM loss and the SSIM metric both use it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_C1 = 0.01**2  # (K1 * data_range)^2 with data_range = 1
SSIM_C2 = 0.03**2


def gaussian_kernel1d(window: int, sigma: float, dtype=torch.float32, device=None) -> Tensor:
    """Normalised 1-D Gaussian of ``window`` taps centred on the middle tap.  # [window]"""
    x = torch.arange(window, dtype=torch.float64, device=device) - (window - 1) / 2.0
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def _blur(x: Tensor, g: Tensor, stride: int) -> Tensor:
    """Separable depthwise Gaussian, valid (no padding). x: [B, C, H, W]; g: [k]."""
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), stride=(stride, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, stride), groups=c)


def ssim_map(
    pred: Tensor,
    target: Tensor,
    window: int = 11,
    sigma: float = 1.5,
    stride: int = 1,
    c1: float = SSIM_C1,
    c2: float = SSIM_C2,
) -> Tensor:
    """Per-pixel SSIM (Wang et al. 2004) with a Gaussian window, valid convolution.

    pred, target: ``[B, C, H, W]``. Returns ``[B, C, H', W']`` with
    ``H' = (H - window) // stride + 1``. Differentiable (for SSIM/S3IM losses); population
    (not sample) variances, as in the paper.
    """
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"ssim_map expects two [B,C,H,W] tensors, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if min(pred.shape[-2:]) < window:
        raise ValueError(f"image {tuple(pred.shape[-2:])} smaller than the SSIM window {window}")
    g = gaussian_kernel1d(window, sigma, pred.dtype, pred.device)
    mu_x, mu_y = _blur(pred, g, stride), _blur(target, g, stride)
    sxx = _blur(pred * pred, g, stride) - mu_x**2
    syy = _blur(target * target, g, stride) - mu_y**2
    sxy = _blur(pred * target, g, stride) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return num / den
