"""Regularisers on sparse-voxel geometry (corner values ``[N, 8]``, corner order ``4 x + 2 y + z``, edge
lengths ``size`` ``[N]`` in scene units). Pure functions; the trainer picks the voxels and the weights.

* :func:`voxel_gradient`: the trilinear field's gradient at each voxel centre (exact: the mean of the four
  corner differences along each axis, over the edge length);
* :func:`voxel_eikonal`: ``(|grad| - 1)^2`` of that gradient (sdf mode);
* :func:`voxel_twist`: the non-affine part of the trilinear field (its xy, xz, yz and xyz coefficients), a
  per-voxel curvature: zero exactly when the field is linear inside the voxel (sdf mode);
* :func:`voxel_tv`: mean squared difference along the 12 voxel edges (density mode; SVRaster's TV);
* :func:`laplacian_smooth_`: an explicit smoothing step on the corner values (not a loss);
* :func:`face_neighbours` / :func:`voxel_smoothness`: the change of the centre gradient between voxels that
  share a face, per scene unit (a curvature that reaches across voxels, which the twist term does not; sdf mode).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.voxels.octree import CORNER_OFFSETS

# the 12 edges as (corner, corner + step along one axis): x steps by 4, y by 2, z by 1 in the corner index
_EDGES = torch.tensor([(c, c + s) for s in (4, 2, 1) for c in range(8) if not c & s])  # [12, 2]


def voxel_gradient(corners: Tensor, size: Tensor) -> Tensor:
    """Gradient ``[N, 3]`` of the trilinear field at the voxel centres (field units per scene unit)."""
    off = CORNER_OFFSETS.to(corners.device, corners.dtype) * 2.0 - 1.0  # [8, 3]
    return (corners @ off) / (4.0 * size[:, None])


def voxel_eikonal(corners: Tensor, size: Tensor) -> Tensor:
    """Mean of ``(|grad| - 1)^2`` at the voxel centres."""
    return ((voxel_gradient(corners, size).norm(dim=-1) - 1.0) ** 2).mean()


def _signs(axes: tuple[int, ...], device, dtype) -> Tensor:
    """``[8]``: the product over ``axes`` of (+1 at the high corner, -1 at the low one)."""
    s = CORNER_OFFSETS.to(device, dtype) * 2.0 - 1.0  # [8, 3]
    return s[:, list(axes)].prod(-1)


def voxel_twist(corners: Tensor, size: Tensor) -> Tensor:
    """Mean squared non-affine coefficient (xy, xz, yz, xyz) of the trilinear field, per scene unit.

    For ``f = a + b.x + c_xy x y + ...`` on the unit cube the coefficient of ``x y`` is ``sum_k s_x s_y f_k / 4``
    up to the z-term, so the sums below vanish exactly for a linear field; divided by the edge length they
    are half the change of the gradient across the voxel (e.g. ``f_xy size / 2``).
    """
    axes = ((0, 1), (0, 2), (1, 2), (0, 1, 2))
    sign = torch.stack([_signs(a, corners.device, corners.dtype) for a in axes], -1)  # [8, 4]
    coef = (corners @ sign) / (4.0 * size[:, None])  # [N, 4]
    return (coef**2).sum(-1).mean()


def voxel_tv(corners: Tensor) -> Tensor:
    """Mean squared difference of the corner values along the 12 edges of every voxel."""
    e = _EDGES.to(corners.device)
    return ((corners[:, e[:, 1]] - corners[:, e[:, 0]]) ** 2).mean()


def face_neighbours(tree) -> Tensor:
    """Pairs ``[P, 2]`` (i, j) of leaves of ``tree`` where j holds the point one edge length past i's centre
    along +x, +y or +z (a face neighbour of the same size or larger; smaller ones are found from their side)."""
    centres, size = tree.centres(), tree.boxes()[1]
    pairs = []
    for axis in range(3):
        step = torch.zeros_like(centres)
        step[:, axis] = size
        j = tree.locate(centres + step)
        i = torch.arange(len(j), device=j.device)
        pairs.append(torch.stack([i, j], -1)[j >= 0])
    return torch.cat(pairs)


def voxel_smoothness(corners: Tensor, size: Tensor, pairs: Tensor) -> Tensor:
    """Mean squared change of the centre gradient between the voxels of each pair ``[P, 2]``, divided by the
    distance between their centres (``(size_i + size_j) / 2``): zero exactly for a field that is linear
    across the pair; 0 when there are no pairs."""
    if pairs.numel() == 0:
        return corners.sum() * 0.0
    g = voxel_gradient(corners, size)  # [N, 3]
    dist = 0.5 * (size[pairs[:, 0]] + size[pairs[:, 1]])
    return (((g[pairs[:, 0]] - g[pairs[:, 1]]) / dist[:, None]) ** 2).sum(-1).mean()


@torch.no_grad()
def laplacian_smooth_(values: Tensor, vox_key: Tensor, lam: float) -> Tensor:
    """Move each corner value ``[M]`` in place a fraction ``lam`` towards the mean of its neighbours along the
    voxel edges (``vox_key`` ``[N, 8]``: the corners of each voxel); returns ``values``. One explicit step of
    Laplacian smoothing: it damps voxel-scale noise whatever the optimizer's step size, leaves a field that is
    linear along every edge pair unchanged at interior corners, and shrinks curved level sets by about
    ``lam * h^2 * curvature`` a step."""
    e = _EDGES.to(vox_key.device)
    a, b = vox_key[:, e[:, 0]].reshape(-1), vox_key[:, e[:, 1]].reshape(-1)
    total = torch.zeros_like(values).index_add_(0, a, values[b]).index_add_(0, b, values[a])
    count = (
        torch.zeros_like(values)
        .index_add_(0, a, torch.ones_like(values[b]))
        .index_add_(0, b, torch.ones_like(values[a]))
    )
    target = torch.where(count > 0, total / count.clamp_min(1.0), values)
    return values.add_(lam * (target - values))
