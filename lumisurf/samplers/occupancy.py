"""Occupancy grid (nerfacc-style, plain torch, CPU and CUDA): skip empty space along rays.

A binary grid over the cube [-1, 1]^3 marks cells the surface may pass through. It is refreshed from
the SDF: a cell is occupied when |sdf(centre)| is within its half-diagonal (the SDF is ~1-Lipschitz)
plus a band that follows the NeuS density width (``band / inv_s``), so early, blurry training keeps
wide shells and late training keeps a thin one. Rays are marched at fixed steps through the grid; the
first and last occupied steps bound the interval where the fine samples go; rays that meet no
occupied cell never touch the field.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from lumisurf.samplers.occupancy_warp import ray_bounds_warp


class OccupancyGrid(nn.Module):
    def __init__(self, resolution: int = 64, bound: float = 1.0, band: float = 4.0):
        super().__init__()
        self.resolution, self.bound, self.band = resolution, bound, band
        self.register_buffer("occupied", torch.ones(resolution, resolution, resolution, dtype=torch.bool))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def cell_size(self) -> float:
        return 2.0 * self.bound / self.resolution

    def cell_centers(self) -> Tensor:  # [R^3, 3], index order [x, y, z]
        r = self.resolution
        c = (torch.arange(r, device=self.occupied.device, dtype=torch.float32) + 0.5) * self.cell_size - self.bound
        return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)

    @torch.no_grad()
    def update(self, sdf_fn, inv_s: float, chunk: int = 65536) -> float:
        """Re-mark cells from ``sdf_fn`` ([N,3] -> [N]); returns the occupied fraction."""
        centers = self.cell_centers()
        sdf = torch.cat([sdf_fn(centers[i:i + chunk]) for i in range(0, centers.shape[0], chunk)])
        threshold = 0.5 * 3 ** 0.5 * self.cell_size + self.band / max(inv_s, 1e-6)
        occ = (sdf.abs() <= threshold).reshape(self.occupied.shape)
        # rays are only sampled inside the unit sphere: cells wholly outside it never matter
        occ &= (centers.norm(dim=-1) <= self.bound + 0.5 * 3 ** 0.5 * self.cell_size).reshape(occ.shape)
        self.occupied.copy_(occ)
        self.initialized.fill_(True)
        return float(occ.float().mean())

    def lookup(self, points: Tensor) -> Tensor:
        """Occupancy of points [..., 3] (outside the cube: False)."""
        idx = ((points + self.bound) / self.cell_size).floor().long()
        inside = ((idx >= 0) & (idx < self.resolution)).all(-1)
        idx = idx.clamp(0, self.resolution - 1)
        return self.occupied[idx[..., 0], idx[..., 1], idx[..., 2]] & inside

    @torch.no_grad()
    def ray_bounds(self, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, n_steps: int,
                   kernel: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Tighten [near, far] [n_rays, 1] to the occupied stretch; returns near, far, hit [n_rays].

        The march runs in a Warp kernel when it can (``kernel``), else in torch (:meth:`occupied_steps`)."""
        if not bool(self.initialized):
            return near, far, (far > near)[:, 0]
        steps = ray_bounds_warp(self.occupied, self.bound, self.cell_size, origins, dirs, near, far, n_steps) \
            if kernel else None
        first, last = steps if steps is not None else self.occupied_steps(origins, dirs, near, far, n_steps)
        hit = (first >= 0) & (far > near)[:, 0]
        step = (far - near) / n_steps
        u = (torch.stack([first, last], -1).clamp_min(0).to(near.dtype) + 0.5) / n_steps  # [n_rays, 2]
        t = near + (far - near) * u
        new_near = torch.where(hit[:, None], torch.maximum(near, t[:, :1] - step), near)
        new_far = torch.where(hit[:, None], torch.minimum(far, t[:, 1:] + step), near)
        return new_near, new_far, hit

    def occupied_steps(self, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, n_steps: int
                       ) -> tuple[Tensor, Tensor]:
        """First and last occupied stratum centre [n_rays] (-1: none) of ``n_steps`` over [near, far]
        (plain torch: the Warp kernel's twin)."""
        u = (torch.arange(n_steps, device=near.device, dtype=near.dtype) + 0.5) / n_steps  # [S]
        t = near + (far - near) * u  # [n_rays, S]
        occ = self.lookup(origins[:, None] + dirs[:, None] * t[..., None])  # [n_rays, S]
        any_occ = occ.any(-1)
        first = torch.argmax(occ.to(torch.uint8), dim=-1)
        last = n_steps - 1 - torch.argmax(occ.flip(-1).to(torch.uint8), dim=-1)
        none = torch.full_like(first, -1)
        return torch.where(any_occ, first, none), torch.where(any_occ, last, none)
