"""S3IM: Stochastic Structural SIMilarity (Xie et al., ICCV 2023).

Rays of a random batch carry no image structure, so SSIM is taken over *virtual patches*: the batch
is repeated ``repeats`` times (the first copy in order, the others randomly permuted), laid out as a
``[3, patch_height, W]`` image and compared with SSIM over ``kernel x kernel`` windows at stride
``kernel`` (Gaussian window, sigma 1.5, as the paper's SSIM). Colors in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.losses.ssim import ssim_map

S3IM_SIGMA = 1.5


def virtual_patch_index(n_rays: int, repeats: int, generator: torch.Generator | None = None) -> Tensor:
    """Ray indices [repeats * n_rays] (CPU): identity, then ``repeats - 1`` random permutations."""
    parts = [torch.arange(n_rays)]
    parts += [torch.randperm(n_rays, generator=generator) for _ in range(repeats - 1)]
    return torch.cat(parts)


def s3im_loss(
    pred: Tensor,
    target: Tensor,
    kernel: int = 4,
    stride: int = 4,
    repeats: int = 10,
    patch_height: int = 64,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``1 - mean SSIM`` of the virtual patches of pred, target ``[n_rays, 3]`` (scalar).

    The ``repeats * n_rays`` re-ordered colors fill a ``[3, h, W]`` image row by row with
    ``h = min(patch_height, n_rays)`` and ``W = repeats * n_rays // h`` (a remainder is dropped).
    SSIM windows do not cross the image border (valid convolution). No rays give 0 (with a graph).
    """
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"s3im_loss expects two [n_rays, C] tensors, got {tuple(pred.shape)}, {tuple(target.shape)}")
    n, c = pred.shape
    if n == 0:
        return (pred - target).sum() * 0.0
    h = min(patch_height, n)
    width = repeats * n // h
    if h < kernel or width < kernel:
        raise ValueError(
            f"s3im_loss: {n} rays x {repeats} repeats make a {h}x{width} patch, "
            f"smaller than the {kernel}x{kernel} window"
        )
    idx = virtual_patch_index(n, repeats, generator)[: h * width].to(pred.device)

    def patch(x: Tensor) -> Tensor:
        return x[idx].transpose(0, 1).reshape(1, c, h, width)  # [1, C, h, W]

    return 1.0 - ssim_map(patch(pred), patch(target), window=kernel, sigma=S3IM_SIGMA, stride=stride).mean()
