"""Plain-torch reference for rendering sparse voxels: every ray meets every voxel, sorted by entry distance.

It is the test reference (and a fallback for tiny scenes) of the fast rasterizer: O(rays x voxels) memory.
Maths as pure functions over ``[n_rays, n_voxels]`` tensors. Rays are unit-length (``t`` in scene units).

Geometry per voxel is 8 corner values (corner order ``4 x + 2 y + z``, see :mod:`lumisurf.voxels.octree`),
trilinear inside the voxel:

* ``density``: raw values, activated after interpolation by the exp-linear map (SVRaster); a segment
  ``[a, b]`` gets ``alpha = 1 - exp(-sum_k STEP_SCALE * (b - a) / K * sigma(t_k))`` from K midpoint samples.
* ``sdf``: signed distances (negative inside); a segment gets NeuS' interval opacity from the SDF at its
  entry and exit points with sharpness ``inv_s``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from lumisurf.renderers.volume import accumulate, alpha_from_sdf_interval, composite_background, render_weights
from lumisurf.voxels.octree import CORNER_OFFSETS

STEP_SCALE = 100.0  # density is per 0.01 scene units
MAX_ALPHA = 0.99999
_EXP_LINEAR_KNEE = 1.1

GeometryMode = Literal["density", "sdf"]


def exp_linear(x: Tensor) -> Tensor:
    """SVRaster's density activation: ``x`` above 1.1, ``exp(x / 1.1 - 1 + ln 1.1)`` below (C1 at 1.1)."""
    k = _EXP_LINEAR_KNEE
    return torch.where(x > k, x, torch.exp(x.clamp_max(k) / k - 1.0 + math.log(k)))


def corner_weights(u: Tensor) -> Tensor:
    """Weights ``[..., 8]`` of the 8 corners at local coordinates ``u`` ``[..., 3]`` in [0, 1]^3."""
    off = CORNER_OFFSETS.to(u.device, u.dtype)  # [8, 3]
    w = torch.where(off.bool(), u[..., None, :], 1.0 - u[..., None, :])  # [..., 8, 3]
    return w.prod(-1)


def ray_box(origins: Tensor, dirs: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances ``[n_rays, n_voxels]`` of rays through boxes ``[lo, hi]`` (slab test).

    Entry is clamped to 0 (a ray starting inside a box); a miss has ``exit <= entry``.
    """
    d = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    inv = 1.0 / d  # [n_rays, 3]
    t0 = (lo[None] - origins[:, None]) * inv[:, None]  # [n_rays, n_voxels, 3]
    t1 = (hi[None] - origins[:, None]) * inv[:, None]
    return torch.minimum(t0, t1).amax(-1).clamp_min(0.0), torch.maximum(t0, t1).amin(-1)


def segment_field(corners: Tensor, lo: Tensor, size: Tensor, origins: Tensor, dirs: Tensor, t: Tensor) -> Tensor:
    """Trilinear corner values at ``o + t d`` ``[R, N, K]`` for ``t`` ``[R, N, K]``.

    Voxel data is laid out per ray (each ray may order its voxels differently): corners ``[R, N, 8]``,
    lo ``[R, N, 3]``, size ``[R, N]``; origins, dirs ``[R, 3]``.
    """
    p = origins[:, None, None] + dirs[:, None, None] * t[..., None]  # [R, N, K, 3]
    u = ((p - lo[:, :, None]) / size[..., None, None]).clamp(0.0, 1.0)
    return (corner_weights(u) * corners[:, :, None]).sum(-1)


def density_alpha(
    corners: Tensor, lo: Tensor, size: Tensor, origins: Tensor, dirs: Tensor, a: Tensor, b: Tensor, n_samples: int = 1
) -> Tensor:
    """Segment opacity ``[R, N]`` in density mode from ``n_samples`` midpoint samples of ``[a, b]`` ``[R, N]``
    (voxel data per ray as in :func:`segment_field`)."""
    seg = (b - a).clamp_min(0.0)
    k = torch.arange(n_samples, device=a.device, dtype=a.dtype)
    t = a[..., None] + (k + 0.5) / n_samples * seg[..., None]  # [R, N, K]
    sigma = exp_linear(segment_field(corners, lo, size, origins, dirs, t))
    return (1.0 - torch.exp(-STEP_SCALE * (seg / n_samples) * sigma.sum(-1))).clamp_max(MAX_ALPHA)


def sdf_alpha(
    corners: Tensor,
    lo: Tensor,
    size: Tensor,
    origins: Tensor,
    dirs: Tensor,
    a: Tensor,
    b: Tensor,
    inv_s: Tensor | float,
) -> Tensor:
    """Segment opacity ``[R, N]`` in sdf mode: NeuS' interval opacity from the SDF at entry and exit."""
    sdf = segment_field(corners, lo, size, origins, dirs, torch.stack([a, b], -1))  # [R, N, 2]
    return alpha_from_sdf_interval(sdf[..., 0], sdf[..., 1], inv_s).clamp_max(MAX_ALPHA)


def distortion(weights: Tensor, mid: Tensor, seg: Tensor) -> Tensor:
    """Mip-NeRF 360's distortion ``[R, 1]`` of front-to-back segments: ``sum_ij w_i w_j |m_i - m_j| + sum_i
    w_i^2 s_i / 3`` for weights, midpoints and lengths ``[R, E]`` (scene units; midpoints non-decreasing
    where the weight is non-zero). Small when a ray's weight sits in one short stretch (a surface)."""
    wm = weights * mid
    before_w, before_wm = weights.cumsum(-1) - weights, wm.cumsum(-1) - wm  # sums over the segments in front
    return (weights * (2.0 * (mid * before_w - before_wm) + weights * seg / 3.0)).sum(-1, keepdim=True)


class PriorityTap(torch.autograd.Function):
    """Identity on segment opacities ``alpha`` ``[R, N]``; the gradient of the per-voxel ``priority`` ``[N]``
    input (all ones, never optimised) is ``sum |dL/dalpha * alpha|`` over the voxel's segments: SVRaster's
    subdivision priority, accumulated in ``priority.grad`` across steps like any gradient."""

    @staticmethod
    def forward(ctx, alpha: Tensor, voxel: Tensor, priority: Tensor) -> Tensor:
        ctx.save_for_backward(alpha, voxel)
        ctx.n_vox = priority.shape[0]
        return alpha.view_as(alpha)

    @staticmethod
    def backward(ctx, grad: Tensor):
        alpha, voxel = ctx.saved_tensors
        tap = (grad * alpha).abs()
        g_p = torch.zeros(ctx.n_vox, dtype=grad.dtype, device=grad.device)
        g_p.index_add_(0, voxel.expand_as(tap).reshape(-1), tap.reshape(-1))
        return grad, None, g_p


def tap_priority(alpha: Tensor, voxel: Tensor, priority: Tensor | None) -> Tensor:
    """``alpha`` through :class:`PriorityTap` when a ``priority`` tensor that wants gradients is given."""
    if priority is None or not priority.requires_grad:
        return alpha
    return PriorityTap.apply(alpha, voxel, priority)


def voxel_normals(corners: Tensor, mode: GeometryMode) -> Tensor:
    """One outward unit normal per voxel ``[N, 3]`` from its corner differences (the mean gradient).

    SDF grows outwards; density grows inwards, so its gradient is flipped.
    """
    off = CORNER_OFFSETS.to(corners.device, corners.dtype) * 2.0 - 1.0  # [8, 3]: -1 / +1 per axis
    g = corners @ off  # [N, 3]
    g = g if mode == "sdf" else -g
    return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def rasterize_reference(
    origins: Tensor,
    dirs: Tensor,
    lo: Tensor,
    size: Tensor,
    corners: Tensor,
    rgb: Tensor,
    background: Tensor,
    mode: GeometryMode = "density",
    inv_s: Tensor | float = 64.0,
    n_samples: int = 1,
    priority: Tensor | None = None,
) -> dict[str, Tensor]:
    """Render ``n_rays`` rays through ``N`` voxels by brute force.

    origins, dirs ``[R, 3]`` (unit dirs); lo ``[N, 3]`` voxel min corners; size ``[N]`` edge lengths; corners
    ``[N, 8]`` geometry values; rgb ``[N, 3]`` colors seen from this view; background ``[3]`` or ``[R, 3]``.
    Returns ``rgb`` ``[R, 3]``, ``opacity`` ``[R, 1]``, ``depth`` ``[R, 1]`` (expected entry-exit midpoint,
    not divided by opacity), ``normal`` ``[R, 3]`` (weighted, outward), ``distortion`` ``[R, 1]``
    (:func:`distortion`), ``max_weight`` ``[N]``. A ``priority``
    ``[N]`` (ones, requiring grad) collects the subdivision priority in its gradient (:class:`PriorityTap`).
    """
    n_vox = lo.shape[0]
    a, b = ray_box(origins, dirs, lo, lo + size[:, None])
    hit = b > a  # [R, N]
    order = torch.argsort(torch.where(hit, a, torch.full_like(a, math.inf)), dim=-1)  # front to back
    a, b, hit = a.gather(1, order), b.gather(1, order), hit.gather(1, order)
    vox = lambda x: x[order]  # noqa: E731  [N, ...] -> [R, N, ...] in each ray's order
    geo = (vox(corners), vox(lo), vox(size), origins, dirs, a, b)
    alpha = density_alpha(*geo, n_samples) if mode == "density" else sdf_alpha(*geo, inv_s)
    alpha = tap_priority(torch.where(hit, alpha, torch.zeros_like(alpha)), order, priority)
    w = render_weights(alpha)  # [R, N]
    opacity = accumulate(w)
    out = {
        "opacity": opacity,
        "rgb": composite_background(accumulate(w, vox(rgb)), opacity, background),
        "depth": accumulate(w, (0.5 * (a + b))[..., None]),
        "normal": accumulate(w, vox(voxel_normals(corners, mode))),
        "distortion": distortion(w, torch.where(hit, 0.5 * (a + b), 0.0), torch.where(hit, b - a, 0.0)),
    }
    max_w = torch.zeros(n_vox, dtype=w.dtype, device=w.device)
    out["max_weight"] = max_w.scatter_reduce(0, order.reshape(-1), w.detach().reshape(-1), "amax")
    return out
