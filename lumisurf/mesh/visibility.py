"""Space no training camera sees is made solid before marching cubes.

An SDF trained from images is only constrained where a camera looks. Behind the surface it is shaped by
the eikonal term alone, and early in training (low NeuS sharpness) the photometric loss leaves pockets and
tunnels there, most of all on mirror-like objects whose reflections it first explains with geometry behind
the surface. Such a pocket is "outside" (SDF > level) yet hidden from every view: no image says it is empty,
and its walls add internal surfaces to the mesh. :func:`fill_unseen` makes these voxels inside.

Conventions as in :mod:`lumisurf.mesh.marching_cubes`: the grid ``[R, R, R]`` spans ``[-bound, bound]^3``
(both ends included), indexed ``[x, y, z]``; cameras live in the same (normalised) frame.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.data.normalization import project_points


def sample_grid(grid: Tensor, points: Tensor, bound: float) -> Tensor:
    """Trilinear SDF at ``points`` ``[N, 3]`` from ``grid`` ``[R, R, R]`` (indexed x, y, z).  # [N]"""
    g = (points / bound)[:, [2, 1, 0]].reshape(1, -1, 1, 1, 3)  # grid_sample reads (W, H, D) = (z, y, x)
    out = F.grid_sample(grid[None, None], g.to(grid.dtype), align_corners=True, padding_mode="border")
    return out.reshape(-1)


def in_frame(cameras, i: int, points: Tensor) -> Tensor:
    """Whether ``points`` ``[N, 3]`` lie in front of camera ``i`` and project inside its image (with lens
    distortion).  # [N] bool"""
    u, v, valid = project_points(cameras, i, points)
    return valid & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height)


def blocked_towards(
    grid: Tensor, points: Tensor, target: Tensor, bound: float, level: float, max_steps: int = 512
) -> Tensor:
    """Whether the segment from each point ``[N, 3]`` to ``target`` ``[3]`` crosses below ``level``.  # [N] bool

    Sphere tracing on the grid: steps of the SDF value clamped to [0.5, 4] voxels, from one voxel off the
    start; a ray that leaves the grid's cube or reaches the target is free.
    """
    vox = 2.0 * bound / (grid.shape[0] - 1)
    d = target[None] - points
    length = d.norm(dim=-1)
    d = d / length.clamp_min(1e-12)[:, None]
    t = torch.full_like(length, vox)
    blocked = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    active = torch.arange(points.shape[0], device=points.device)
    for _ in range(max_steps):
        if active.numel() == 0:
            break
        p = points[active] + d[active] * t[active, None]
        s = sample_grid(grid, p, bound) - level
        hit = s < 0
        blocked[active[hit]] = True
        done = hit | (p.abs() > bound).any(-1) | (t[active] > length[active])
        t[active] += s.clamp(0.5 * vox, 4.0 * vox)
        active = active[~done]
    return blocked


def unseen_outside(grid: np.ndarray, cameras, bound: float = 1.0, level: float = 0.0, stride: int = 2) -> np.ndarray:
    """Voxels ``[R, R, R]`` above ``level`` that no camera sees (out of its image or behind the surface).

    Tested on every ``stride``-th voxel within the bounding box (grown by 2 voxels) of the inside voxels;
    a fine voxel is unseen when a coarse voxel at a corner of its cell is and none is seen. ``cameras``: a
    :class:`lumisurf.data.cameras.Cameras` in the grid's frame. A voxel stops being tested at the first camera that
    sees it.
    """
    r = grid.shape[0]
    vox = 2.0 * bound / (r - 1)
    inside = np.argwhere(grid < level)
    hidden = np.zeros(grid.shape, dtype=bool)
    if len(inside) == 0 or len(cameras) == 0:
        return hidden
    lo, hi = inside.min(0) - 2, inside.max(0) + 2
    coarse = np.argwhere(grid[::stride, ::stride, ::stride] > level) * stride  # [M, 3] fine indices
    coarse = coarse[((coarse >= lo) & (coarse <= hi)).all(1)]
    g = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))
    pts = torch.from_numpy(coarse * vox - bound).float()
    alive = torch.arange(len(pts))
    for i in range(len(cameras)):
        if alive.numel() == 0:
            break
        x = pts[alive]
        seen = in_frame(cameras, i, x)
        cand = seen.nonzero().squeeze(1)
        seen[cand] = ~blocked_towards(g, x[cand], cameras.centers[i].float(), bound, level)
        alive = alive[~seen]
    verdict = np.zeros((len(coarse),), dtype=np.int8) + 1  # 1 seen, 2 unseen
    verdict[alive.numpy()] = 2
    return _spread_to_fine(grid > level, coarse // stride, verdict, stride)


def _spread_to_fine(outside: np.ndarray, coarse: np.ndarray, verdict: np.ndarray, stride: int) -> np.ndarray:
    """Fine voxels that are outside, next to an unseen coarse voxel and next to no seen one.

    ``coarse`` ``[M, 3]`` coarse indices with ``verdict`` ``[M]`` (1 seen, 2 unseen); the others are untested.
    A fine voxel in the cell from coarse voxel ``b`` to ``b + 1`` looks at the 8 corners of that cell.
    """
    shape = tuple((n - 1) // stride + 1 for n in outside.shape)
    votes = np.zeros(shape, dtype=np.int8)
    votes[coarse[:, 0], coarse[:, 1], coarse[:, 2]] = verdict
    unseen, seen = votes == 2, votes == 1
    for axis in range(3):  # any of the cell's corners: b or b + 1 along every axis
        for m in (unseen, seen):
            lo, hi = [slice(None)] * 3, [slice(None)] * 3
            lo[axis], hi[axis] = slice(0, -1), slice(1, None)
            m[tuple(lo)] |= m[tuple(hi)]
    up = lambda m: (
        m.repeat(stride, 0)
        .repeat(stride, 1)
        .repeat(stride, 2)[: outside.shape[0], : outside.shape[1], : outside.shape[2]]
    )
    return outside & up(unseen) & ~up(seen)


def fill_unseen(
    grid: np.ndarray, cameras, bound: float = 1.0, level: float = 0.0, stride: int = 2
) -> tuple[np.ndarray, int]:
    """The grid with :func:`unseen_outside` voxels mirrored below ``level`` (inside); and their count."""
    hidden = unseen_outside(grid, cameras, bound, level, stride)
    n = int(hidden.sum())
    if n:
        grid = grid.copy()
        grid[hidden] = level - np.abs(grid[hidden] - level)
    return grid, n
