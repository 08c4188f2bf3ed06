"""Occupancy grid (nerfacc-style, plain torch, CPU and CUDA): skip empty space along rays.

A binary grid over the cube [-1, 1]^3 marks cells the surface may pass through. It is refreshed from
the SDF: a cell is occupied when |sdf(centre)| is within its half-diagonal (the SDF is ~1-Lipschitz)
plus a band that follows the NeuS density width (``band / inv_s``), so early, blurry training keeps
wide shells and late training keeps a thin one. Rays are marched at fixed steps through the grid; the
first and last occupied steps bound the interval where the fine samples go; rays that meet no
occupied cell never touch the field.

The refresh's SDF values at the cell centres are kept too (:meth:`coarse_sdf`): a trilinear lookup in them is
the coarse SDF a proposal network would give, at no field evaluation (``sampler.coarse_sdf=occupancy``). They
live only in memory (not in checkpoints): until the first refresh of a process there is no cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lumisurf.samplers.occupancy_warp import ray_bounds_warp


class OccupancyGrid(nn.Module):
    def __init__(self, resolution: int = 64, bound: float = 1.0, band: float = 4.0):
        super().__init__()
        self.resolution, self.bound, self.band = resolution, bound, band
        self.register_buffer("occupied", torch.ones(resolution, resolution, resolution, dtype=torch.bool))
        self.register_buffer("initialized", torch.tensor(False))
        # the last refresh's SDF at the cell centres [1, 1, R, R, R] (index order x, y, z); not saved
        self.register_buffer("sdf_cache", torch.zeros(0), persistent=False)

    @property
    def cell_size(self) -> float:
        return 2.0 * self.bound / self.resolution

    def cell_centers(self) -> Tensor:  # [R^3, 3], index order [x, y, z]
        r = self.resolution
        c = (torch.arange(r, device=self.occupied.device, dtype=torch.float32) + 0.5) * self.cell_size - self.bound
        return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)

    @torch.no_grad()
    def update(
        self, sdf_fn, inv_s: float, chunk: int = 65536, explore: float = 1.0, generator: torch.Generator | None = None
    ) -> float:
        """Re-mark cells from ``sdf_fn`` ([N,3] -> [N]); returns the occupied fraction.

        ``explore`` < 1 (nerfacc's partial update): once this process has refreshed the whole grid, only the cells
        that can hold the surface now are evaluated: the occupied ones and their 26 neighbours (the surface moves
        continuously, less than a cell between refreshes) and a random ``explore`` fraction of the others (a
        surface appearing far from the old one is found within a few refreshes). The rest keep their state."""
        centers = self.cell_centers()  # [R^3, 3]
        cand = None  # flat indices of the cells evaluated (None: all)
        if explore < 1.0 and self.sdf_cache.numel() > 0:
            near = F.max_pool3d(self.occupied[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
            draw = torch.rand(near.shape, generator=generator, device=generator.device if generator else None)
            cand = (near | (draw.to(near.device) < explore)).reshape(-1).nonzero()[:, 0]
            centers = centers[cand]
        sdf = torch.cat([sdf_fn(centers[i : i + chunk]) for i in range(0, centers.shape[0], chunk)])
        threshold = 0.5 * 3**0.5 * self.cell_size + self.band / max(inv_s, 1e-6)
        # rays are only sampled inside the unit sphere: cells wholly outside it never matter
        occ = (sdf.abs() <= threshold) & (centers.norm(dim=-1) <= self.bound + 0.5 * 3**0.5 * self.cell_size)
        if cand is None:
            self.occupied.copy_(occ.reshape(self.occupied.shape))
            self.sdf_cache = sdf.reshape(1, 1, *self.occupied.shape).to(torch.float32)
        else:
            self.occupied.view(-1)[cand] = occ
            self.sdf_cache.view(-1)[cand] = sdf.to(torch.float32)
        self.initialized.fill_(True)
        return float(self.occupied.float().mean())

    @torch.no_grad()
    def coarse_sdf(self, points: Tensor) -> Tensor | None:
        """The SDF at points [N, 3] interpolated trilinearly between the last refresh's cell-centre values (clamped
        to the outer centres), [N]; None before the first refresh of this process."""
        if self.sdf_cache.numel() == 0:
            return None
        # grid_sample's last coordinate runs along the volume's last axis: (z, y, x) for our [x, y, z] cells
        g = (points.to(self.sdf_cache.dtype) / self.bound).flip(-1).reshape(1, 1, 1, -1, 3)
        out = F.grid_sample(self.sdf_cache, g, mode="bilinear", padding_mode="border", align_corners=False)
        return out.reshape(-1).to(points.dtype)

    def lookup(self, points: Tensor) -> Tensor:
        """Occupancy of points [..., 3] (outside the cube: False)."""
        idx = ((points + self.bound) / self.cell_size).floor().long()
        inside = ((idx >= 0) & (idx < self.resolution)).all(-1)
        idx = idx.clamp(0, self.resolution - 1)
        return self.occupied[idx[..., 0], idx[..., 1], idx[..., 2]] & inside

    @torch.no_grad()
    def ray_bounds(
        self, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, n_steps: int, kernel: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Tighten [near, far] [n_rays, 1] to the occupied stretch; returns near, far, hit [n_rays].

        The march runs in a Warp kernel when it can (``kernel``), else in torch (:meth:`occupied_steps`)."""
        if not bool(self.initialized):
            return near, far, (far > near)[:, 0]
        steps = (
            ray_bounds_warp(self.occupied, self.bound, self.cell_size, origins, dirs, near, far, n_steps)
            if kernel
            else None
        )
        first, last = steps if steps is not None else self.occupied_steps(origins, dirs, near, far, n_steps)
        hit = (first >= 0) & (far > near)[:, 0]
        step = (far - near) / n_steps
        u = (torch.stack([first, last], -1).clamp_min(0).to(near.dtype) + 0.5) / n_steps  # [n_rays, 2]
        t = near + (far - near) * u
        new_near = torch.where(hit[:, None], torch.maximum(near, t[:, :1] - step), near)
        new_far = torch.where(hit[:, None], torch.minimum(far, t[:, 1:] + step), near)
        return new_near, new_far, hit

    def occupied_steps(
        self, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, n_steps: int
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
