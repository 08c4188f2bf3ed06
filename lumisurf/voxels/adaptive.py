"""Sparse-voxel layout over training: initialisation from the masks' visual hull, pruning of voxels no view
uses, subdivision of the voxels with the largest priority, under a voxel cap and a memory budget.

Pure functions over a :class:`lumisurf.voxels.model.SparseVoxelModel` and its optimizer; when and with which
thresholds they run is the trainer's schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lumisurf.data.normalization import carve, carving_masks, project_points
from lumisurf.voxels.octree import MAX_LEVEL
from lumisurf.voxels.structure import VoxelOctree


def visual_hull_octree(
    level: int, scene_min: Tensor, extent: float, cameras=None, masks: Tensor | None = None, min_views: int = 1
) -> VoxelOctree:
    """Every cell of ``level`` with a corner inside the visual hull of ``masks`` ``[n, H, W]`` (bool; a view
    only carves what it sees); every cell when there are no masks."""
    dense = VoxelOctree.dense(level, scene_min, extent)
    if masks is None or cameras is None:
        return dense
    small, factor = carving_masks(masks)
    inside = torch.zeros(dense.n_corners, dtype=torch.bool)
    inside[carve(dense.corner_positions(), cameras, small, factor, min_views)] = True
    keep = inside[dense.vox_key].any(1)
    if not keep.any():
        raise ValueError("the visual hull of the masks holds no voxel: masks and cameras disagree")
    return dense.select(keep)[0]


def bytes_per_voxel(sh_bands: int) -> int:
    """Memory of one voxel with Adam: geometry (about one shared corner per voxel), SH and both moments,
    the corner index ``[8]``, path and level."""
    floats = (1 + 3 * sh_bands**2) * 3  # parameter + 2 moments
    return 4 * floats + 8 * 8 + 16


def voxel_cap(max_voxels: int, max_memory_mb: float | None, sh_bands: int) -> int:
    """The voxel count allowed by ``max_voxels`` and, if given, ``max_memory_mb``."""
    if max_memory_mb is None:
        return max_voxels
    return min(max_voxels, int(max_memory_mb * 2**20 / bytes_per_voxel(sh_bands)))


@dataclass
class AdaptResult:
    pruned: int
    subdivided: int
    voxels: int

    def line(self) -> str:
        return f"voxels: -{self.pruned} pruned, {self.subdivided} subdivided -> {self.voxels}"


@torch.no_grad()
def pixel_footprint(centres: Tensor, cameras, chunk: int = 65536) -> Tensor:
    """Smallest pixel footprint ``[N]`` (scene units: depth along the optical axis / fx) of points ``[N, 3]``
    over the ``cameras`` whose image holds them; inf where none does (SVRaster's minimum sampling interval)."""

    out = torch.full((centres.shape[0],), math.inf, device=centres.device)
    for s in range(0, centres.shape[0], chunk):
        pts = centres[s : s + chunk]
        best = out[s : s + chunk]
        for i in range(len(cameras)):
            u, v, valid = project_points(cameras, i, pts)
            z = (pts - cameras.c2w[i, :3, 3]) @ cameras.c2w[i, :3, 2]  # depth along the optical axis
            seen = valid & (z > 0) & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height)
            best = torch.where(seen, torch.minimum(best, z / cameras.fx[i]), best)
        out[s : s + chunk] = best
    return out


def adapt(
    model,
    optimizer,
    max_weight: Tensor,
    priority: Tensor,
    prune_below: float,
    subdivide_fraction: float,
    cap: int,
    can_split: Tensor | None = None,
) -> AdaptResult:
    """Prune voxels whose largest blending weight over the views is below ``prune_below``, then subdivide the
    ``subdivide_fraction`` of the rest with the largest ``priority`` (>0), as far as ``cap`` voxels allow.

    ``max_weight``, ``priority``, ``can_split`` (bool; e.g. children still larger than the pixel footprint):
    ``[N]`` for the model's current voxels. The voxel with the largest weight is always kept. The optimizer's
    state follows (:meth:`SparseVoxelModel.restructure`).
    """
    keep = max_weight >= prune_below
    keep[int(torch.argmax(max_weight))] = True
    pruned = int((~keep).sum())
    if pruned:
        model.restructure(*model.tree.select(keep), optimizer)
        priority = priority[keep]
        can_split = None if can_split is None else can_split[keep]
    n = len(model.tree)
    room = max(0, (cap - n) // 7)
    want = min(room, math.ceil(subdivide_fraction * n))
    eligible = (priority > 0) & (model.tree.level < MAX_LEVEL)
    if can_split is not None:
        eligible &= can_split
    want = min(want, int(eligible.sum()))
    if want:
        score = torch.where(eligible, priority, torch.full_like(priority, -1.0))
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.topk(score, want).indices] = True
        model.restructure(*model.tree.subdivide(mask), optimizer)
    return AdaptResult(pruned, want, len(model.tree))
