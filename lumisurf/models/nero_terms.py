"""NeRO's per-ray terms of the surface model: accumulated Stage I materials and, when training, the occlusion
pairs its occlusion loss compares (the occlusion MLP at surface points against an SDF march along the
reflected direction). Pure functions over ``(n_rays, n_samples)`` tensors; normalised frame."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lumisurf.renderers.occlusion import march_occlusion
from lumisurf.renderers.volume import accumulate


def nero_ray_terms(
    shade: dict,
    weights: Tensor,
    pts: Tensor,
    grad: Tensor,
    d: Tensor,
    inv_s: Tensor,
    nero,
    sdf_fn: Callable[[Tensor], Tensor],
    occupied_fn: Callable[[Tensor], Tensor] | None,
    training: bool,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """Per-ray albedo/metallic/roughness [k, C] from the per-sample ``shade`` and ``weights`` [k, S]; when
    training, occ_pred (the occlusion MLP, unclamped) and occ_target (SDF-marched hit probability), both
    [M, 1], at up to ``nero.occ_points`` surface points. ``pts``, ``grad`` [k, S, 3]; ``d`` [k, 3];
    ``occupied_fn``: the occupancy grid's lookup (the march skips empty cells), or None."""
    k, n_s = weights.shape
    res = {
        key: accumulate(weights, shade[key].reshape(k, n_s, shade[key].shape[-1]))
        for key in ("albedo", "metallic", "roughness")
    }
    if not training or nero.occ_points <= 0 or k == 0:
        return res
    sel = occlusion_samples(weights, pts, grad, d, nero.occ_points, generator)
    if sel.numel() == 0:
        return res
    res.update(occlusion_pairs(shade, sel, pts.reshape(-1, 3), inv_s, nero, sdf_fn, occupied_fn))
    return res


def occlusion_pairs(
    shade: dict,
    sel: Tensor,
    points: Tensor,
    inv_s: Tensor,
    nero,
    sdf_fn: Callable[[Tensor], Tensor],
    occupied_fn: Callable[[Tensor], Tensor] | None,
) -> dict[str, Tensor]:
    """occ_pred (the occlusion MLP's raw output) and occ_target (the SDF-marched hit probability along the
    reflected direction), both [M, 1], at the rows ``sel`` [M] of the flat ``shade`` entries and ``points``."""
    target = march_occlusion(
        sdf_fn,
        points[sel].detach(),
        shade["reflected"][sel].detach(),
        float(inv_s.detach()),
        nero.occ_steps,
        nero.occ_t_start,
        occupied_fn=occupied_fn,
    )
    return {"occ_pred": shade["occ_raw"][sel], "occ_target": target}


@torch.no_grad()
def occlusion_samples(
    weights: Tensor, pts: Tensor, grad: Tensor, d: Tensor, max_points: int, generator: torch.Generator | None
) -> Tensor:
    """Flat sample indices [M <= max_points]: the highest-weight sample of random rays that reach the surface
    (opacity > 0.5), inside the unit sphere and facing the camera."""
    k, n_s = weights.shape
    rows = torch.arange(k, device=weights.device)
    best = weights.argmax(-1)  # [k]
    pick = occlusion_rays(weights.sum(-1), pts[rows, best], grad[rows, best], d, max_points, generator)
    return (rows * n_s + best)[pick]


@torch.no_grad()
def occlusion_rays(
    opacity: Tensor, points: Tensor, normals: Tensor, d: Tensor, max_points: int, generator: torch.Generator | None
) -> Tensor:
    """Indices [M <= max_points] of random rays whose surface point ``points`` [k, 3] (opacity [k] > 0.5) lies
    inside the unit sphere and whose normal ``normals`` [k, 3] faces the camera (``d`` [k, 3])."""
    ok = (opacity > 0.5) & (points.norm(dim=-1) < 0.999) & ((normals * d).sum(-1) < 0)
    cand = ok.nonzero()[:, 0]
    if cand.numel() > max_points:
        perm = torch.randperm(cand.numel(), generator=generator)[:max_points]
        cand = cand[perm.to(cand.device)]
    return cand
