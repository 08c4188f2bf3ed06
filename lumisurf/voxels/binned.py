"""The tile-binned entry list of one view and its constants, shared by the binning's torch and Warp paths and the
rasterizer (see :mod:`lumisurf.voxels.binning`)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

TILE = 16
NEAR = 1e-3  # corners closer than this (camera z) make the voxel cover the whole image


@dataclass
class Binned:
    """The sorted entry list of one view."""

    voxel: Tensor  # [E] voxel index of each entry
    octant: Tensor  # [E] octant (0..7) of the rays the entry serves
    tile_start: Tensor  # [n_tiles + 1] entries of tile t are [tile_start[t], tile_start[t + 1])
    bbox: Tensor  # [N, 4] int: pixel columns [x0, x1) and rows [y0, y1) the voxel may cover
    tiles_x: int
    tiles_y: int
