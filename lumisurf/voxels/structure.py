"""The sparse voxel set: octree leaves, geometry on shared corners, color per voxel; subdivide and prune.

Every structural change is expressed as two linear maps from the old parameters to the new ones, so the
optimizer state (Adam's moments) follows the parameters through it:

* per-voxel rows (color): ``new[v'] = old[source[v']]`` (a child copies its parent);
* corner values (geometry): ``new = A @ old`` with ``A`` ``[M', M]`` sparse, kept as its (row, column, value)
  triplets and applied by a scatter-add (no coalescing sort); a child's corner is the parent's trilinear
  field at that point, and a corner shared by several voxels takes their mean.

The root cube is ``[scene_min, scene_min + extent]^3`` in the normalised frame (object in the unit sphere).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from lumisurf.voxels.octree import (
    CORNER_OFFSETS,
    MAX_LEVEL,
    children,
    ijk_to_path,
    lattice_to_world,
    shared_corners,
    voxel_boxes,
)
from lumisurf.voxels.raster_torch import corner_weights


@dataclass
class Remap:
    """How a structural change maps old parameters to new: voxel rows by index, corners by a sparse matrix."""

    voxel_source: Tensor  # [N'] old voxel index of each new voxel
    rows: Tensor  # [nnz] new corner of each weight of A
    cols: Tensor  # [nnz] old corner
    vals: Tensor  # [nnz] weight (duplicate (row, col) pairs add up)
    n_corners: int  # M'

    def voxels(self, x: Tensor) -> Tensor:
        return x[self.voxel_source]

    def corners(self, x: Tensor) -> Tensor:  # [M, ...] -> [M', ...]
        flat = x.reshape(x.shape[0], -1)
        out = flat.new_zeros(self.n_corners, flat.shape[1])
        out.index_add_(0, self.rows, flat[self.cols] * self.vals[:, None].to(flat.dtype))
        return out.reshape(self.n_corners, *x.shape[1:])


class VoxelOctree:
    """Leaves ``(path, level)`` of one root cube, with their shared corners (see :mod:`lumisurf.voxels.octree`)."""

    def __init__(self, path: Tensor, level: Tensor, scene_min: Tensor, extent: float):
        if path.numel() == 0:
            raise ValueError("a sparse voxel set needs at least one voxel")
        self.path, self.level = path.long(), level.long()
        self.scene_min, self.extent = scene_min.float(), float(extent)
        self.corner_keys, self.vox_key = shared_corners(self.path, self.level)  # [M, 3], [N, 8]

    @classmethod
    def dense(cls, level: int, scene_min: Tensor, extent: float, device=None) -> VoxelOctree:
        """Every cell of level ``level`` (``2^level`` per axis)."""
        n = 1 << level
        r = torch.arange(n, device=device)
        ijk = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        lv = torch.full((ijk.shape[0],), level, dtype=torch.long, device=device)
        return cls(ijk_to_path(ijk, lv), lv, scene_min.to(device), extent)

    def __len__(self) -> int:
        return int(self.path.shape[0])

    @property
    def n_corners(self) -> int:
        return int(self.corner_keys.shape[0])

    @cached_property
    def _centre_size(self) -> tuple[Tensor, Tensor]:
        """Centres ``[N, 3]`` and edge lengths ``[N]``, decoded once: a tree never changes (structural changes
        make a new one), and every render asks for them."""
        return voxel_boxes(self.path, self.level, self.scene_min, self.extent)

    def boxes(self) -> tuple[Tensor, Tensor]:
        """Min corners ``[N, 3]`` and edge lengths ``[N]``."""
        centre, size = self._centre_size
        return centre - size[:, None] / 2, size

    def centres(self) -> Tensor:  # [N, 3]
        return self._centre_size[0]

    def corner_positions(self) -> Tensor:  # [M, 3]
        return lattice_to_world(self.corner_keys, self.scene_min, self.extent)

    def locate(self, points: Tensor) -> Tensor:
        """Index ``[P]`` of the leaf holding each point ``[P, 3]``, -1 outside every leaf.

        For each level present, the point's cell at that level is looked up among that level's leaves (sorted
        paths); leaves never overlap, so at most one level answers.
        """
        found = torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
        rel = (points - self.scene_min) / self.extent  # [P, 3] in [0, 1) inside the root cube
        inside = ((rel >= 0) & (rel < 1)).all(-1)
        for lv in torch.unique(self.level).tolist():
            members = (self.level == lv).nonzero().squeeze(1)
            order = torch.argsort(self.path[members])
            paths = self.path[members][order]
            ijk = (rel * (1 << lv)).floor().long().clamp(0, (1 << lv) - 1)
            query = ijk_to_path(ijk, torch.full_like(found, lv))
            pos = torch.searchsorted(paths, query).clamp_max(len(paths) - 1)
            hit = inside & (paths[pos] == query)
            found = torch.where(hit, members[order][pos], found)
        return found

    def select(self, keep: Tensor) -> tuple[VoxelOctree, Remap]:
        """The leaves where ``keep`` ``[N]`` (bool) holds; corners keep their values."""
        idx = keep.nonzero().squeeze(1)
        if idx.numel() == 0:
            raise ValueError("pruning would remove every voxel")
        new = VoxelOctree(self.path[idx], self.level[idx], self.scene_min, self.extent)
        rows = new.vox_key.reshape(-1)
        cols = self.vox_key[idx].reshape(-1)
        return new, Remap(idx, *_mean_map(rows, cols, torch.ones(rows.shape, device=rows.device), new.n_corners))

    def subdivide(self, mask: Tensor) -> tuple[VoxelOctree, Remap]:
        """Replace the leaves where ``mask`` ``[N]`` holds by their 8 children (appended after the others)."""
        split = mask.nonzero().squeeze(1)
        if split.numel() and (self.level[split] >= MAX_LEVEL).any():
            raise ValueError(f"cannot subdivide voxels at the maximum level {MAX_LEVEL}")
        kept = (~mask).nonzero().squeeze(1)
        kid_path, kid_level = children(self.path[split], self.level[split])
        new = VoxelOctree(
            torch.cat([self.path[kept], kid_path]),
            torch.cat([self.level[kept], kid_level]),
            self.scene_min,
            self.extent,
        )
        source = torch.cat([kept, split.repeat_interleave(8)])
        # kept voxels: each corner is its old corner; children: the parent's trilinear field at the corner
        off = CORNER_OFFSETS.to(self.path.device).float()
        local = (off[:, None, :] + off[None, :, :]) / 2.0  # [8 children, 8 corners, 3] in the parent
        w = corner_weights(local)  # [8, 8, 8 parent corners]
        n_kid = split.numel() * 8
        kid_rows = new.vox_key[len(kept) :].reshape(n_kid, 8, 1).expand(-1, -1, 8)
        kid_cols = self.vox_key[split][:, None, None, :].expand(-1, 8, 8, -1).reshape(n_kid, 8, 8)
        kid_vals = w[None].expand(split.numel(), -1, -1, -1).reshape(n_kid, 8, 8)
        rows = torch.cat([new.vox_key[: len(kept)].reshape(-1), kid_rows.reshape(-1)])
        cols = torch.cat([self.vox_key[kept].reshape(-1), kid_cols.reshape(-1)])
        dev = self.path.device
        vals = torch.cat([torch.ones(len(kept) * 8, device=dev), kid_vals.reshape(-1)])
        entries = torch.cat(
            [
                torch.arange(len(kept) * 8, device=dev),
                len(kept) * 8 + torch.arange(n_kid * 8, device=dev).repeat_interleave(8),
            ]
        )
        return new, Remap(source, *_mean_map(rows, cols, vals, new.n_corners, entries))


def _mean_map(rows: Tensor, cols: Tensor, vals: Tensor, n_new: int, entries: Tensor | None = None):
    """Triplets of the sparse ``[n_new, n_old]`` map giving each new corner the mean over the (voxel, corner)
    entries that land on it: ``(rows, cols, vals / count[rows], n_new)``.

    ``rows``/``cols``/``vals`` list the weights; ``entries`` names the entry each weight belongs to (several
    weights per entry for interpolated corners; default one entry per weight).
    """
    if entries is None:
        entries = torch.arange(rows.numel(), device=rows.device)
    entry_row = torch.zeros(int(entries.max()) + 1, dtype=torch.long, device=rows.device).scatter_(0, entries, rows)
    count = torch.bincount(entry_row, minlength=n_new).clamp_min(1).float()
    return rows, cols, vals.float() / count[rows], n_new
