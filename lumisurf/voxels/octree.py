"""Octree addressing for sparse voxels: Morton paths, voxel boxes, shared corners, front-to-back order.

Conventions (the same as SVRaster's, so its published behaviour is our reference):

* A leaf is ``(path, level)``; ``level`` in ``1..MAX_LEVEL``. Its integer cell ``ijk`` lies in
  ``[0, 2^level)^3`` of the root cube ``[scene_min, scene_min + extent]^3``.
* ``path`` is int64 and **left-aligned**: level 1's child index sits in bits 45..47, level ``L``'s in bits
  ``3 (MAX_LEVEL - L)`` .. ``+2``; deeper triples are zero.
* A child (and corner) index is ``4 x + 2 y + z`` (x the most significant bit).
* Corner positions are integer keys on the finest lattice, ``(ijk + offset) << (MAX_LEVEL - level)`` per
  axis (0 .. 2^16 inclusive); two voxels share a corner only where these keys coincide.
* The octant of a direction ``d`` is ``(d_x < 0) << 2 | (d_y < 0) << 1 | (d_z < 0)``. Sorting the leaves by
  ``path XOR (octant repeated in every triple)`` is a front-to-back order for every ray of that octant.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_LEVEL = 16
TRIPLES = sum(1 << (3 * i) for i in range(MAX_LEVEL))  # 0o1111111111111111: one bit per triple
CORNER_OFFSETS = torch.tensor([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)], dtype=torch.long)  # [8, 3]


def _shift(level: Tensor) -> Tensor:
    return 3 * (MAX_LEVEL - level.long())


def ijk_to_path(ijk: Tensor, level: Tensor) -> Tensor:
    """Left-aligned Morton paths ``[N]`` of integer cells ``ijk`` ``[N, 3]`` at ``level`` ``[N]``."""
    ijk, level = ijk.long(), level.long()
    path = torch.zeros(ijk.shape[0], dtype=torch.long, device=ijk.device)
    for b in range(MAX_LEVEL):  # bit b of ijk is the child index at level (level - b)
        triple = (((ijk[:, 0] >> b) & 1) << 2) | (((ijk[:, 1] >> b) & 1) << 1) | ((ijk[:, 2] >> b) & 1)
        used = b < level
        path |= torch.where(used, triple << _shift((level - b).clamp_min(1)), torch.zeros_like(triple))
    return path


def path_to_ijk(path: Tensor, level: Tensor) -> Tensor:
    """Integer cells ``[N, 3]`` of left-aligned paths ``[N]`` at ``level`` ``[N]``."""
    path, level = path.long(), level.long()
    ijk = torch.zeros(path.shape[0], 3, dtype=torch.long, device=path.device)
    for lv in range(1, MAX_LEVEL + 1):
        triple = (path >> (3 * (MAX_LEVEL - lv))) & 7
        take = lv <= level
        for a, bit in enumerate((2, 1, 0)):
            ijk[:, a] = torch.where(take, (ijk[:, a] << 1) | ((triple >> bit) & 1), ijk[:, a])
    return ijk


def voxel_boxes(path: Tensor, level: Tensor, scene_min: Tensor, extent: float) -> tuple[Tensor, Tensor]:
    """Centres ``[N, 3]`` and edge lengths ``[N]`` (scene units) of the leaves."""
    size = extent * torch.pow(2.0, -level.to(scene_min.dtype))
    centre = scene_min + (path_to_ijk(path, level).to(scene_min.dtype) + 0.5) * size[:, None]
    return centre, size


def children(path: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
    """The 8 children of every leaf, parent-major in child order 0..7: paths and levels ``[8 N]``."""
    if (level >= MAX_LEVEL).any():
        raise ValueError(f"cannot subdivide a voxel at the maximum level {MAX_LEVEL}")
    child = torch.arange(8, dtype=torch.long, device=path.device)
    lv = level.long() + 1
    kids = path[:, None] | (child[None] << _shift(lv)[:, None])  # [N, 8]
    return kids.reshape(-1), lv[:, None].expand(-1, 8).reshape(-1)


def corner_keys(path: Tensor, level: Tensor) -> Tensor:
    """Finest-lattice integer positions ``[N, 8, 3]`` of every leaf's corners (corner order as children)."""
    ijk = path_to_ijk(path, level)
    s = (MAX_LEVEL - level.long())[:, None, None]
    return (ijk[:, None, :] + CORNER_OFFSETS.to(ijk.device)[None]) << s


def shared_corners(path: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
    """Unique corner lattice keys ``[M, 3]`` and each leaf's corner indices into them ``[N, 8]``."""
    keys = corner_keys(path, level).reshape(-1, 3)
    packed = (keys[:, 0] << 34) | (keys[:, 1] << 17) | keys[:, 2]  # 17 bits per axis (0 .. 2^16)
    uniq, inverse = torch.unique(packed, return_inverse=True)
    mask = (1 << 17) - 1
    grid = torch.stack([(uniq >> 34) & mask, (uniq >> 17) & mask, uniq & mask], -1)
    return grid, inverse.reshape(-1, 8)


def lattice_to_world(keys: Tensor, scene_min: Tensor, extent: float) -> Tensor:
    """World positions ``[M, 3]`` of finest-lattice keys ``[M, 3]``."""
    return scene_min + keys.to(scene_min.dtype) * (extent / (1 << MAX_LEVEL))


def direction_octant(dirs: Tensor) -> Tensor:
    """Octant ``[N]`` (0..7) of directions ``[N, 3]``: ``(x < 0) << 2 | (y < 0) << 1 | (z < 0)``."""
    neg = (dirs < 0).long()
    return (neg[:, 0] << 2) | (neg[:, 1] << 1) | neg[:, 2]


def order_rank(path: Tensor, octant: int | Tensor) -> Tensor:
    """Sort key ``[N]``: ascending is front to back for every ray whose direction lies in ``octant``."""
    return path ^ (torch.as_tensor(octant, dtype=torch.long, device=path.device) * TRIPLES)
