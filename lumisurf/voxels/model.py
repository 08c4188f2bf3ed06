"""A trainable sparse voxel field: geometry on shared corners, spherical-harmonics colour per voxel.

It holds no data or poses: :meth:`SparseVoxelModel.render_view` takes a camera. Colour is evaluated once per
voxel and view, along the direction from the camera to the voxel centre (SVRaster), as
``max(0, sum_k sh_k Y_k(d) + 0.5)``. Structural changes (:meth:`SparseVoxelModel.restructure`) replace the
parameters and carry the optimizer's per-element state through the same linear maps.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lumisurf.encodings.spherical_harmonics import sh_basis
from lumisurf.voxels.binning import bin_voxels
from lumisurf.voxels.raster import rasterize_tiles
from lumisurf.voxels.raster_torch import GeometryMode, trilinear_weights
from lumisurf.voxels.structure import Remap, VoxelOctree


class SparseVoxelModel(nn.Module):
    """``mode`` density (raw values, exp-linear activation) or sdf (signed distances, NeuS opacity)."""

    def __init__(self, tree: VoxelOctree, mode: GeometryMode = "density", sh_bands: int = 4,
                 geo_init: Tensor | float = -10.0, inv_s: float = 50.0):
        super().__init__()
        self.tree, self.mode, self.sh_bands = tree, mode, sh_bands
        geo = torch.as_tensor(geo_init, dtype=torch.float32)
        self.geo = nn.Parameter(geo.expand(tree.n_corners).clone() if geo.dim() == 0 else geo.clone())
        self.sh = nn.Parameter(torch.zeros(len(tree), sh_bands ** 2, 3))
        self.log_inv_s = nn.Parameter(torch.tensor(math.log(inv_s)))  # used in sdf mode only
        self.active_bands = sh_bands

    @property
    def inv_s(self) -> Tensor:
        return self.log_inv_s.exp()

    def corners(self) -> Tensor:  # [N, 8]
        return self.geo[self.tree.vox_key]

    def field(self, points: Tensor, outside: float = 1.0) -> Tensor:
        """Trilinear geometry value ``[P]`` at ``points`` ``[P, 3]`` (SDF in sdf mode, raw density otherwise);
        ``outside`` where no voxel holds the point (pruned space is empty: positive SDF)."""
        v = self.tree.locate(points)
        lo, size = self.tree.boxes()
        safe = v.clamp_min(0)
        u = ((points - lo[safe]) / size[safe, None]).clamp(0.0, 1.0)
        val = (trilinear_weights(u) * self.corners()[safe]).sum(-1)
        return torch.where(v >= 0, val, torch.full_like(val, outside))

    def voxel_colours(self, eye: Tensor) -> Tensor:
        """Colour ``[N, 3]`` of every voxel seen from ``eye`` ``[3]`` (first ``active_bands`` SH bands)."""
        d = self.tree.centres() - eye
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        k = self.active_bands ** 2
        basis = sh_basis(d, self.active_bands)  # [N, k]
        return ((basis[..., None] * self.sh[:, :k]).sum(1) + 0.5).clamp_min(0.0)

    def render_view(self, cameras, cam: int, background: Tensor, backend: str = "auto") -> dict[str, Tensor]:
        """All pixels of camera ``cam`` (row-major ``[H * W, ...]``); outputs of
        :func:`lumisurf.voxels.raster.rasterize_tiles`."""
        c2w = cameras.c2w[cam]
        lo, size = self.tree.boxes()
        binned = bin_voxels(self.tree.path, lo, size, c2w, float(cameras.fx[cam]), float(cameras.fy[cam]),
                            float(cameras.cx[cam]), float(cameras.cy[cam]), cameras.width, cameras.height,
                            backend=backend)
        o, d, _, _ = cameras.pixel_rays(cam)
        return rasterize_tiles(binned, o, d, lo, size, self.corners(), self.voxel_colours(c2w[:3, 3]), background,
                               cameras.width, cameras.height, mode=self.mode, inv_s=self.inv_s, backend=backend)

    def restructure(self, tree: VoxelOctree, remap: Remap, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Adopt ``tree`` (from :meth:`VoxelOctree.subdivide` / ``select`` of the current one): parameters and
        the optimizer's per-element state go through ``remap``."""
        new = {"geo": remap.corners(self.geo.detach()), "sh": remap.voxels(self.sh.detach())}
        for name, value in new.items():
            old = getattr(self, name)
            param = nn.Parameter(value.contiguous())
            if optimizer is not None:
                _swap_in_optimizer(optimizer, old, param, remap.corners if name == "geo" else remap.voxels)
            setattr(self, name, param)
        self.tree = tree


def _swap_in_optimizer(optimizer: torch.optim.Optimizer, old: nn.Parameter, new: nn.Parameter, mapping) -> None:
    """Replace ``old`` by ``new`` in the optimizer; tensors of its state shaped like ``old`` are mapped."""
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is old:
                group["params"][i] = new
    state = optimizer.state.pop(old, None)
    if state is not None:
        optimizer.state[new] = {k: mapping(v) if torch.is_tensor(v) and v.shape == old.shape else v
                                for k, v in state.items()}
