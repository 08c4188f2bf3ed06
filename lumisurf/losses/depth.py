"""Image-space geometry losses on rendered depth and normal maps (pure functions over ``[H, W, ...]`` maps).

Depths are distances along unit rays (scene units) unless called z-depth (along the camera's optical axis,
OpenCV +z). Normals are world-space, outward.

* :func:`ray_depth` turns a GT z-depth map into ray distances;
* :func:`depth_l1`: mean absolute depth error over pixels with a GT depth;
* :func:`depth_normals`: normals of the surface a depth map describes (cross product of central differences),
  facing the camera, zero where a neighbour is missing;
* :func:`normal_consistency`: ``mean(1 - <n_rendered, n_depth>)`` over valid pixels (SVRaster's
  median-depth normal loss; the rendered normal is opacity-weighted, so the loss also asks for opacity).
"""

from __future__ import annotations

import torch
from torch import Tensor


def ray_depth(z: Tensor, dirs: Tensor, forward: Tensor) -> Tensor:
    """Ray distance ``[...]`` of z-depth ``z`` ``[...]`` along unit ``dirs`` ``[..., 3]`` of a camera whose
    optical axis is ``forward`` ``[3]`` (unit): ``z / <d, forward>``; 0 stays 0."""
    return z / (dirs * forward).sum(-1).clamp_min(1e-6)


def depth_l1(pred: Tensor, gt: Tensor) -> Tensor:
    """Mean ``|pred - gt|`` over the pixels where ``gt > 0`` (0 when there are none); ``[...]`` each."""
    valid = gt > 0
    if not valid.any():
        return pred.sum() * 0.0
    return (pred[valid] - gt[valid]).abs().mean()


def depth_normals(points: Tensor, dirs: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Unit normals ``[H, W, 3]`` of the surface through ``points`` ``[H, W, 3]`` (the pixels' depth points,
    row-major image: x right, y down), turned to face the rays ``dirs`` ``[H, W, 3]``; and where they are
    defined ``[H, W]`` (the pixel and its four neighbours ``valid``, not on the border)."""
    n = torch.zeros_like(points)
    dx = points[1:-1, 2:] - points[1:-1, :-2]  # [H-2, W-2, 3]
    dy = points[2:, 1:-1] - points[:-2, 1:-1]
    cross = torch.linalg.cross(dx, dy, dim=-1)
    cross = cross / cross.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    facing = torch.where(((cross * dirs[1:-1, 1:-1]).sum(-1, keepdim=True) > 0), -cross, cross)
    n[1:-1, 1:-1] = facing
    ok = torch.zeros_like(valid)
    ok[1:-1, 1:-1] = valid[1:-1, 1:-1] & valid[1:-1, 2:] & valid[1:-1, :-2] & valid[2:, 1:-1] & valid[:-2, 1:-1]
    return n, ok


def normal_consistency(rendered: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """``mean(1 - <rendered, target>)`` over ``valid`` pixels (0 when there are none); ``[H, W, 3]`` maps."""
    if not valid.any():
        return rendered.sum() * 0.0
    return (1.0 - (rendered[valid] * target[valid]).sum(-1)).mean()
