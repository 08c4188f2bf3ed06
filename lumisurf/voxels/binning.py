"""Per-view preprocessing of sparse voxels: screen boxes, camera octants, tile binning in front-to-back order.

Conventions: OpenCV pinhole cameras (x right, y down, z forward; :class:`lumisurf.data.cameras.Cameras`),
pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``. Tiles are ``TILE x TILE`` pixels, row-major.
A voxel is listed once per (tile it may cover, octant of the rays that may hit it); within a tile the
entries are sorted by :func:`lumisurf.voxels.octree.order_rank` of their octant, so a pixel walking its tile's
list and keeping the entries of its own ray's octant meets its voxels front to back.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lumisurf.voxels.binned import NEAR, TILE, Binned
from lumisurf.voxels.octree import CORNER_OFFSETS, order_rank


def screen_boxes(
    lo: Tensor, size: Tensor, c2w: Tensor, fx: float, fy: float, cx: float, cy: float, width: int, height: int
) -> Tensor:
    """Pixel boxes ``[N, 4]`` (x0, x1, y0, y1; half-open, clipped; empty when x0 >= x1) of voxel boxes.

    The box of the 8 projected corners, grown to every pixel whose centre it may contain. A voxel with a
    corner behind (or at) the near plane covers the whole image; one wholly behind it covers nothing.
    """
    corners = lo[:, None] + CORNER_OFFSETS.to(lo)[None] * size[:, None, None]  # [N, 8, 3]
    pc = (corners - c2w[:3, 3]) @ c2w[:3, :3]  # world -> camera (R^T (x - t) as rows)
    z = pc[..., 2]
    zs = z.clamp_min(NEAR)
    u, v = fx * pc[..., 0] / zs + cx, fy * pc[..., 1] / zs + cy  # [N, 8]
    x0 = torch.floor(u.amin(1) - 0.5) + 1  # first pixel whose centre is >= the left edge
    x1 = torch.floor(u.amax(1) - 0.5) + 1
    y0 = torch.floor(v.amin(1) - 0.5) + 1
    y1 = torch.floor(v.amax(1) - 0.5) + 1
    box = torch.stack([x0, x1, y0, y1], -1)
    straddle = (z <= NEAR).any(1) & (z > NEAR).any(1)
    full = torch.tensor([0.0, width, 0.0, height], dtype=box.dtype, device=box.device)
    box = torch.where(straddle[:, None], full, box)
    box = torch.where((z <= NEAR).all(1)[:, None], torch.zeros_like(box), box)
    lim = torch.tensor([width, width, height, height], dtype=box.dtype, device=box.device)
    return torch.minimum(box.clamp_min(0), lim).long()


def corner_octants(lo: Tensor, size: Tensor, eye: Tensor) -> Tensor:
    """Bitset ``[N]`` (8 bits) of the octants of the directions from ``eye`` ``[3]`` to each voxel's corners."""
    corners = lo[:, None] + CORNER_OFFSETS.to(lo)[None] * size[:, None, None]  # [N, 8, 3]
    neg = (corners < eye).long()
    q = (neg[..., 0] << 2) | (neg[..., 1] << 1) | neg[..., 2]  # [N, 8]
    bits = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    for k in range(8):
        bits |= 1 << q[:, k]
    return bits


def bin_voxels(
    path: Tensor,
    lo: Tensor,
    size: Tensor,
    c2w: Tensor,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    width: int,
    height: int,
    backend: str = "auto",
) -> Binned:
    """Screen boxes, octants and the tile-sorted entry list of one view (see the module docstring).

    ``backend``: ``warp`` (float32; the per-voxel work in kernels), ``torch`` (this function's body, the
    reference) or ``auto`` (Warp when it can run).
    """
    if backend != "torch":
        from lumisurf.voxels import binning_warp  # lazy: Warp (seconds to import) loads only for its path

        reason = binning_warp.unavailable(lo)
        if reason is None:
            return binning_warp.bin_voxels_warp(path, lo, size, c2w, fx, fy, cx, cy, width, height)
        if backend == "warp":
            raise RuntimeError(f"the Warp voxel binning cannot run here: {reason}")
    bbox = screen_boxes(lo, size, c2w, fx, fy, cx, cy, width, height)
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    tx0, ty0 = bbox[:, 0] // TILE, bbox[:, 2] // TILE
    ntx = torch.where(bbox[:, 1] > bbox[:, 0], (bbox[:, 1] - 1) // TILE - tx0 + 1, torch.zeros_like(tx0))
    nty = torch.where(bbox[:, 3] > bbox[:, 2], (bbox[:, 3] - 1) // TILE - ty0 + 1, torch.zeros_like(ty0))
    octs = corner_octants(lo, size, c2w[:3, 3])
    bit = (octs[:, None] >> torch.arange(8, device=octs.device)) & 1  # [N, 8]
    n_oct = bit.sum(1)
    count = ntx * nty * n_oct  # entries per voxel
    vox = torch.repeat_interleave(torch.arange(len(path), device=path.device), count)
    k = torch.arange(vox.numel(), device=path.device) - torch.repeat_interleave(count.cumsum(0) - count, count)
    which_oct, tile_k = k % n_oct[vox], k // n_oct[vox]
    octant = _nth_set_bit(bit[vox], which_oct)
    tile = (ty0[vox] + tile_k // ntx[vox]) * tiles_x + tx0[vox] + tile_k % ntx[vox]
    key = (tile << 48) | order_rank(path[vox], octant)
    key, perm = torch.sort(key)
    tile_start = torch.searchsorted(key >> 48, torch.arange(tiles_x * tiles_y + 1, device=key.device))
    return Binned(vox[perm], octant[perm], tile_start, bbox, tiles_x, tiles_y)


def _nth_set_bit(bits: Tensor, n: Tensor) -> Tensor:
    """Index of the ``n``-th set bit (0-based) of each row of ``bits`` ``[E, 8]`` (0/1).  # [E]"""
    rank = bits.cumsum(1) - 1  # [E, 8]: rank of each set bit
    hit = (rank == n[:, None]) & (bits == 1)
    return hit.long().argmax(1)
