"""TSDF fusion of rendered depth: a surface for models whose geometry is a density (SVRaster's mesh route).

Each view contributes a depth map (ray distance along unit rays from the camera centre, OpenCV cameras) and
where it sees the surface (``hit``). A point projected into a view's pixel gets the signed distance along that
pixel's ray, ``depth - |p - o|`` (positive in front of the surface), truncated to ``trunc`` and divided by it;
a pixel without a surface says the whole ray is empty (+1); points behind the surface by more than ``trunc``,
or outside the image, learn nothing from that view. The fused value is the mean over the views that spoke;
where none did, -1 if some view has the point deep behind its surface (the object's interior) and +1
otherwise (never seen: empty here; the extraction's unseen-space filling can still close it). The surface is
the zero level set, negative inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lumisurf.data.normalization import project_points


def view_tsdf(points: Tensor, cams, i: int, depth: Tensor, hit: Tensor, trunc: float):
    """What view ``i`` says about ``points`` ``[P, 3]``: the truncated signed distance ``[P]`` in [-1, 1], where
    it speaks ``[P]`` (bool: in the image and not deeper than ``trunc`` behind the surface) and where the point
    lies deeper than that behind the surface ``[P]`` (bool). ``depth``, ``hit``: ``[H, W]`` maps of the view."""
    u, v, valid = project_points(cams, i, points)
    h, w = depth.shape
    col, row = u.floor().long(), v.floor().long()
    valid = valid & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    pix = row.clamp(0, h - 1) * w + col.clamp(0, w - 1)
    d, seen_surface = depth.reshape(-1)[pix], hit.reshape(-1)[pix]
    dist = (points - cams.c2w[i, :3, 3]).norm(dim=-1)
    sdf = torch.where(seen_surface, (d - dist).clamp_max(trunc) / trunc, torch.ones_like(dist))
    behind = valid & (sdf < -1.0)
    return sdf.clamp_min(-1.0), valid & ~behind, behind


@dataclass
class FusedDepth:
    """Depth maps ``[n, H, W]`` and surface hits ``[n, H, W]`` of cameras ``cams`` (all views, in the frame of
    the points it is called with); callable as a surface function ``[P, 3] -> [P]`` for marching cubes."""

    cams: object
    depth: Tensor
    hit: Tensor
    trunc: float

    def __call__(self, points: Tensor) -> Tensor:
        total = torch.zeros(points.shape[0], device=points.device)
        count = torch.zeros_like(total)
        hidden = torch.zeros_like(total, dtype=torch.bool)
        for i in range(self.depth.shape[0]):
            sdf, speaks, behind = view_tsdf(
                points, self.cams, i, self.depth[i].to(points.device), self.hit[i].to(points.device), self.trunc
            )
            total += torch.where(speaks, sdf, torch.zeros_like(sdf))
            count += speaks.float()
            hidden |= behind
        silent = torch.where(hidden, -torch.ones_like(total), torch.ones_like(total))
        return torch.where(count > 0, total / count.clamp_min(1.0), silent)


@torch.no_grad()
def fuse_rendered_depth(render_fn, cams, trunc: float, progress: bool = False) -> FusedDepth:
    """Render every view of ``cams`` with ``render_fn(cams, i) -> (depth [H, W], hit [H, W])`` and keep the maps."""
    from tqdm.auto import tqdm

    depth, hit = [], []
    for i in tqdm(range(len(cams)), desc="render depth for TSDF", disable=not progress, leave=False):
        d, h = render_fn(cams, i)
        depth.append(d.float().cpu())
        hit.append(h.cpu())
    return FusedDepth(cams.to("cpu"), torch.stack(depth), torch.stack(hit), float(trunc))
