"""Soft variants of the voxel rasterizer (measured options; exact rasterization is the default).

Both run in the plain-torch tile path only (:func:`lumisurf.voxels.raster.rasterize_tiles_torch`).

* **Gaussian footprint** (``sigma`` > 0, in pixels): a ray that misses a voxel's box but passes within
  ``3 sigma`` pixels of it still meets the voxel: its segment is taken on the box grown by that margin (world
  units at the voxel's distance), the field is read at the nearest point inside the box (trilinear coordinates
  clamped), and the opacity is scaled by ``exp(-r^2 / (2 s^2))``, with ``r`` the distance from the segment's
  midpoint to the box and ``s`` sigma pixels at that distance. Rays that hit the box are unchanged, so
  silhouettes get gradients from just outside them (SoftRas' idea for meshes). A ray that grazes the face of
  a voxel it does not enter also gets a fringe segment there, inside the object too.
* **Softmax depth aggregation** (``temperature`` > 0, scene units): instead of front-to-back transmittance,
  weights ``w_i = alpha_i e^{-(m_i - m_0) / tau} / (sum_j alpha_j e^{-(m_j - m_0) / tau} + e^{-1 / tau})``
  with ``m`` the segments' midpoints and ``m_0`` the nearest one; the background sits one scene unit behind
  the nearest segment. As ``tau -> 0`` the nearest segment takes all the weight (a hard z-buffer), not alpha
  compositing: order errors cost nothing, occlusion is soft.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SoftRaster:
    sigma: float = 0.0  # Gaussian footprint in pixels (0: exact coverage)
    temperature: float = 0.0  # softmax depth aggregation, scene units (0: exact compositing)
    pixel_angle: float = 0.0  # one pixel's angle (1 / focal length in pixels) of the view being rendered

    @property
    def footprint(self) -> bool:
        return self.sigma > 0

    @property
    def active(self) -> bool:
        return self.sigma > 0 or self.temperature > 0


def margin(lo: Tensor, size: Tensor, eye: Tensor, soft: SoftRaster) -> Tensor:
    """World-space growth ``[N]`` of each voxel box: ``3 sigma`` pixels at its centre's distance from ``eye``."""
    centre = lo + 0.5 * size[:, None]
    return 3.0 * soft.sigma * soft.pixel_angle * (centre - eye).norm(dim=-1)


def box_distance(p: Tensor, lo: Tensor, size: Tensor) -> Tensor:
    """Euclidean distance ``[...]`` from points ``p`` ``[..., 3]`` to boxes ``[lo, lo + size]`` (0 inside)."""
    below = (lo - p).clamp_min(0.0)
    above = (p - (lo + size[..., None])).clamp_min(0.0)
    return (below + above).norm(dim=-1)


def footprint_gain(
    origins: Tensor, dirs: Tensor, a: Tensor, b: Tensor, lo: Tensor, size: Tensor, soft: SoftRaster
) -> Tensor:
    """Opacity scale ``[R, E]`` of fringe segments ``[a, b]`` ``[R, E]`` of rays ``[R, 3]`` past boxes ``lo``
    ``[R, E, 3]`` / ``size`` ``[R, E]``: the Gaussian of the midpoint's distance to the box, in pixels."""
    mid = 0.5 * (a + b)
    p = origins[:, None] + dirs[:, None] * mid[..., None]
    r = box_distance(p, lo, size)
    s = soft.sigma * soft.pixel_angle * mid.clamp_min(1e-6)
    return torch.exp(-0.5 * (r / s) ** 2)


def softmax_weights(alpha: Tensor, mid: Tensor, hit: Tensor, temperature: float) -> Tensor:
    """Softmax-over-depth weights ``[R, E]`` (module docstring) of opacities, midpoints and hits ``[R, E]``."""
    far = torch.full_like(mid, math.inf)
    m0 = torch.where(hit, mid, far).amin(-1, keepdim=True)
    m0 = torch.where(torch.isfinite(m0), m0, torch.zeros_like(m0))
    score = alpha * torch.exp(-(torch.where(hit, mid, m0) - m0) / temperature) * hit
    return score / (score.sum(-1, keepdim=True) + max(math.exp(-1.0 / temperature), 1e-30))
