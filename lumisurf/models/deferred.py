"""Deferred shading (``model.shade_at=surface``): shade each ray once, at its composited surface point.

Per-sample shading composites ``sum_i w_i c(x_i, n_i, d)``; deferred shading evaluates ``c`` once at the
weight-averaged point ``x = sum w_i x_i / sum w_i``, SDF gradient and feature, and renders
``opacity * c(x, n, d)``. The shading networks run once a ray instead of once a significant sample, and the
colour can no longer be assembled from several samples at different depths, so a reflection has to be
explained by one normal at one point (GS-2DGS' ablation: Chamfer 0.0074 -> 0.0068, arXiv 2506.13110).

Pure functions over ``(n_rays, n_samples)`` tensors; the model passes in its shading and SDF callables.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lumisurf.models.nero_terms import occlusion_pairs, occlusion_rays

ShadeFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], dict]


def composite_surface(weights: Tensor, pts: Tensor, grad: Tensor, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The rays' surface point ``[k, 3]``, SDF gradient ``[k, 3]`` and feature ``[k, F]``: weight-averages of the
    samples' points ``[k, S, 3]``, gradients ``[k, S, 3]`` and features ``[k, S, F]`` under ``weights`` ``[k, S]``
    (where a ray has no weight, its point is its first sample)."""
    w = weights[..., None]  # [k, S, 1]
    total = w.sum(1)  # [k, 1]
    safe = total.clamp_min(1e-6)
    x = (w * pts).sum(1) / safe
    x = torch.where(total > 1e-6, x, pts[:, 0])
    return x, (w * grad).sum(1) / safe, (w * feat).sum(1) / safe


def deferred_foreground(
    shade_fn: ShadeFn, weights: Tensor, pts: Tensor, grad: Tensor, feat: Tensor, o: Tensor, d: Tensor
) -> tuple[dict, Tensor, Tensor]:
    """Shade the k rays at their surface points: returns the per-ray shading dict (``rgb`` [k, 3] and, for
    NeRO, its material / light terms [k, C]), the surface points [k, 3] and the composited rgb ``opacity * c``
    [k, 3]. ``shade_fn(points, normals, view_dirs, features, cam_origins)`` is the model's ``shade``."""
    x, n, f = composite_surface(weights, pts, grad, feat)
    shade = shade_fn(x, n, d, f, o)
    return shade, x, weights.sum(-1, keepdim=True) * shade["rgb"]


def deferred_nero_terms(
    shade: dict,
    opacity: Tensor,
    x: Tensor,
    normal: Tensor,
    d: Tensor,
    inv_s: Tensor,
    nero,
    sdf_fn: Callable[[Tensor], Tensor],
    occupied_fn: Callable[[Tensor], Tensor] | None,
    training: bool,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """NeRO's per-ray terms for deferred shading: materials ``opacity * head`` [k, C] (as the per-sample path's
    weighted sums) and, when training, the occlusion MLP against the SDF march at up to ``nero.occ_points``
    surface points ``x`` [k, 3] (opacity > 0.5, inside the unit sphere, facing the camera)."""
    res = {key: opacity * shade[key] for key in ("albedo", "metallic", "roughness")}
    if not training or nero.occ_points <= 0 or x.shape[0] == 0:
        return res
    rays = occlusion_rays(opacity[:, 0], x, normal, d, nero.occ_points, generator)
    if rays.numel() == 0:
        return res
    res.update(occlusion_pairs(shade, rays, x, inv_s, nero, sdf_fn, occupied_fn))
    return res
