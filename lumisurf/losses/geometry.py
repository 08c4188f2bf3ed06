"""Geometry regularisers on the SDF: eikonal, mask (silhouette), curvature and normal smoothness."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.losses.reduce import safe_mean


def eikonal_loss(gradients: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean of ``(|grad sdf| - 1)^2`` over points (0 for no points).

    ``gradients`` ``[..., 3]``; ``weight`` (mask or soft weight) broadcastable to ``[...]`` or with a
    trailing 1, giving ``sum(w * e) / sum(w)`` (0 if all w = 0).
    """
    err = (torch.linalg.norm(gradients, dim=-1) - 1.0) ** 2  # [...]
    if weight is None:
        return safe_mean(err)
    w = weight.to(err.dtype)
    if w.dim() == err.dim() + 1 and w.shape[-1] == 1:
        w = w.squeeze(-1)
    w = torch.broadcast_to(w, err.shape)
    return (w * err).sum() / w.sum().clamp_min(1e-8)


def mask_loss(opacity: Tensor, mask: Tensor) -> Tensor:
    """Binary cross entropy between ray opacity ``[n_rays, 1]`` (clamped to [1e-3, 1 - 1e-3]) and the
    object mask ``[n_rays]`` or ``[n_rays, 1]`` in [0, 1]. 0 for no rays."""
    op = opacity.reshape(-1).clamp(1e-3, 1.0 - 1e-3)
    if op.numel() == 0:
        return op.sum() * 0.0
    return F.binary_cross_entropy(op, mask.reshape(-1).to(op.dtype))


def mask_l2_loss(opacity: Tensor, mask: Tensor) -> Tensor:
    """Mean squared difference between ray opacity ``[n_rays, 1]`` and the object mask ``[n_rays]`` or
    ``[n_rays, 1]`` in [0, 1] (the sparse voxels' mask term: no clamp, a bounded gradient at 0 and 1). 0 for
    no rays."""
    return safe_mean((opacity.reshape(-1) - mask.reshape(-1).to(opacity.dtype)) ** 2)


def curvature_loss(laplacian_or_hessian_trace: Tensor) -> Tensor:
    """Mean absolute mean curvature proxy: ``mean |trace(Hessian sdf)|`` (Neuralangelo); 0 for no points."""
    return safe_mean(laplacian_or_hessian_trace.abs())


def surface_hits(opacity: Tensor, n: int) -> Tensor:
    """Indices ``[P]`` of the first ``n`` rays whose opacity ``[n_rays, 1]`` exceeds 0.5 (they hit the surface)."""
    return (opacity[:, 0] > 0.5).nonzero()[:, 0][:n]


def surface_point_pairs(
    origins: Tensor,
    dirs: Tensor,
    depth: Tensor,
    opacity: Tensor,
    eps: float,
    n: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Points where rays hit the surface (opacity > 0.5; at most ``n``, detached) and each one moved by a random
    offset of length ``eps`` (normalised-frame units): ``[2, P, 3]`` (first the points, then the moved ones).

    origins/dirs ``[n_rays, 3]`` (unit dirs), depth/opacity ``[n_rays, 1]`` as the renderer returns them
    (depth is the weight-sum of t, so it is divided by the opacity)."""
    hit = surface_hits(opacity, n)
    op = opacity[hit].detach()
    pts = (origins[hit] + dirs[hit] * depth[hit].detach() / op).detach()  # [P, 3]
    step = torch.randn(pts.shape, generator=generator, device="cpu").to(pts)
    step = F.normalize(step, dim=-1) * eps
    return torch.stack([pts, pts + step])


def normal_smoothness_loss(grad_a: Tensor, grad_b: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean ``1 - cos`` between SDF gradients ``[P, 3]`` at points and at points a small step away
    (PermutoSDF's curvature term: a flat or smoothly bent surface costs ~0); 0 for no points.
    ``weight`` ``[P]`` (e.g. a gate in [0, 1]) multiplies each pair's term; the mean is still over all P."""
    cos = F.cosine_similarity(grad_a, grad_b, dim=-1, eps=1e-8)  # [P]
    return safe_mean(1.0 - cos if weight is None else weight.to(cos.dtype) * (1.0 - cos))
