"""What the training photos say about surface points: their color and how much it changes with the view.

For points on the current surface (normalised frame) with their normals, every training view that faces a
point, holds it inside the image (and inside its mask) and is not blocked (an SDF march from the point
towards the camera up to the unit sphere, :func:`lumisurf.renderers.occlusion.march_occlusion`) gives one
observed color (bilinear). Per point:

* ``color`` ``[P, 3]``: the median over those views (sRGB, [0, 1]): the view-independent part, and
* ``spread`` ``[P]``: the 90th minus the 10th percentile of their luminance: ~0 for a matte surface (its
  radiance does not depend on the view), large for a metal or a smooth dielectric reflecting the scene.

These need no material model, so they separate materials before Stage I has decomposed them (used by the
material lift, ``train/material_lift.py``). Points seen by fewer than ``min_views`` views get the median
statistics of the well-seen points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.data.images import as_float
from lumisurf.losses.segmentation import project_to_views, sample_view_maps
from lumisurf.renderers.occlusion import march_occlusion

LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709 weights


@dataclass
class ViewStats:
    color: Tensor  # [P, 3] median observed color
    spread: Tensor  # [P] luminance 90th - 10th percentile over the views that see the point
    views: Tensor  # [P] how many views see the point

    def chroma(self, floor: float = 0.03) -> Tensor:
        """[P, 3] color / (r + g + b): the hue of the median color without its brightness (shading)."""
        return self.color / (self.color.sum(-1, keepdim=True) + floor)

    def relative_spread(self, floor: float = 0.05, cap: float = 2.0) -> Tensor:
        """[P] spread / median luminance, at most ``cap``: how view-dependent the point is, whatever its
        brightness."""
        luma = self.color @ torch.tensor(LUMA, dtype=self.color.dtype, device=self.color.device)
        return (self.spread / (luma + floor)).clamp(max=cap)

    def log_spread(self, floor: float = 0.05) -> Tensor:
        """[P] log(relative spread + floor): a matte surface (~0.1, noise) and a mirror (~1) a constant
        distance apart, and a metal's long tail of weakly reflecting points pulled towards its body."""
        return torch.log(self.relative_spread() + floor)


def visible_views(
    sdf_fn: Callable[[Tensor], Tensor],
    inv_s: float,
    cameras,
    view_ids: Tensor,
    points: Tensor,
    normals: Tensor,
    n_steps: int = 24,
    min_cos: float = 0.2,
) -> tuple[Tensor, Tensor]:
    """Pixel positions ``[P, V, 2]`` of points ``[P, 3]`` in views ``view_ids`` ``[V]`` and whether each view
    sees the point ``[P, V]`` (inside the image, the surface faces the camera by ``cos > min_cos``, and the
    SDF does not block the segment to the camera)."""
    uv, _, inside = project_to_views(points, cameras, view_ids)
    to_cam = F.normalize(cameras.centers[view_ids].to(points)[None] - points[:, None], dim=-1)  # [P, V, 3]
    seen = inside & ((to_cam * normals[:, None]).sum(-1) > min_cos)
    pi, vi = seen.nonzero(as_tuple=True)
    blocked = march_occlusion(sdf_fn, points[pi], to_cam[pi, vi], inv_s, n_steps, t_start=0.02)[:, 0] > 0.5
    seen[pi[blocked], vi[blocked]] = False
    return uv, seen


@torch.no_grad()
def view_statistics(
    sdf_fn: Callable[[Tensor], Tensor],
    inv_s: float,
    cameras,
    images: Tensor,
    points: Tensor,
    normals: Tensor,
    masks: Tensor | None = None,
    max_views: int = 16,
    n_steps: int = 24,
    min_views: int = 3,
    chunk: int = 4096,
) -> ViewStats:
    """Median color and luminance spread of ``points`` over up to ``max_views`` evenly chosen training views.

    ``images`` ``[N, H, W, 3]`` are the training images (sRGB, straight color) of ``cameras``, ``masks``
    ``[N, H, W]`` their object masks (or None); ``sdf_fn``
    maps points ``[M, 3]`` to SDF ``[M]``; ``inv_s`` is the NeuS sharpness used for the visibility march."""
    n = len(cameras)
    if points.shape[0] == 0:
        return ViewStats(points.new_zeros(0, 3), points.new_zeros(0), points.new_zeros(0, dtype=torch.long))
    ids = torch.linspace(0, n - 1, min(max_views, n)).round().long().unique().to(cameras.device)
    maps = as_float(images[ids.to(images.device)]).to(points)
    if masks is not None:  # a view whose mask says background there does not see the point (silhouette slips)
        maps = torch.cat([maps, masks[ids.to(masks.device)].to(points)[..., None]], -1)
    color, spread, views = [], [], []
    luma = torch.tensor(LUMA, dtype=points.dtype, device=points.device)
    for p, nrm in zip(points.split(chunk), normals.split(chunk)):
        uv, seen = visible_views(sdf_fn, inv_s, cameras, ids, p, nrm, n_steps)
        obs = sample_view_maps(maps, uv)  # [p, V, 3 or 4]
        if masks is not None:
            seen = seen & (obs[..., 3] > 0.5)
            obs = obs[..., :3]
        obs = torch.where(seen[..., None], obs, torch.full_like(obs, float("nan")))
        color.append(obs.nanmedian(dim=1).values)
        q = torch.nanquantile(obs @ luma, torch.tensor([0.1, 0.9], dtype=obs.dtype, device=obs.device), dim=1)
        spread.append(q[1] - q[0])
        views.append(seen.sum(1))
    stats = ViewStats(torch.cat(color), torch.cat(spread), torch.cat(views))
    return _fill_unseen(stats, min_views)


def _fill_unseen(stats: ViewStats, min_views: int) -> ViewStats:
    """Points seen by fewer than ``min_views`` views take the median statistics of the others."""
    weak = stats.views < min_views
    if weak.all():
        return ViewStats(torch.zeros_like(stats.color), torch.zeros_like(stats.spread), stats.views)
    color, spread = stats.color.clone(), stats.spread.clone()
    color[weak] = color[~weak].median(dim=0).values
    spread[weak] = spread[~weak].median()
    return ViewStats(color, spread, stats.views)
