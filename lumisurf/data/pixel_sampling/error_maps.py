"""Helpers of the adaptive pixel samplers: low-resolution per-view error maps fed by per-ray errors,
and sampling from large discrete distributions.

Pixel coordinates are continuous, x right / y down, pixel (row, col) covering
``[col, col + 1) x [row, row + 1)`` (centre at +0.5), as in :mod:`lumisurf.data.cameras`.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ErrorMaps:
    """Per-view maps ``[n, gh, gw]`` of the mean per-ray error, one cell per image block.

    Pixel ``(x, y)`` of an ``h x w`` image falls in cell ``(floor(y gh / h), floor(x gw / w))``.
    :meth:`update` averages this step's errors per cell and blends them in with an EMA of rate
    ``momentum`` (a cell's first visit assigns the mean directly). Cells never visited read as the
    mean of the visited ones (1.0 before any update), so no full-image render is ever needed.
    """

    def __init__(self, n: int, h: int, w: int, gh: int, gw: int, momentum: float, device):
        self.n, self.h, self.w, self.gh, self.gw = n, h, w, gh, gw
        self.momentum = momentum
        self.err = torch.zeros(n, gh, gw, device=device)  # [n, gh, gw]
        self.visits = torch.zeros(n, gh, gw, device=device)  # rays seen per cell

    def cell_index(self, cam: Tensor, px: Tensor, py: Tensor) -> Tensor:
        """Flat cell index [k] of continuous pixel positions px, py [k] in views cam [k]."""
        cx = torch.floor(px * self.gw / self.w).long().clamp(0, self.gw - 1)
        cy = torch.floor(py * self.gh / self.h).long().clamp(0, self.gh - 1)
        return (cam.long() * self.gh + cy) * self.gw + cx

    def update(self, cam: Tensor, px: Tensor, py: Tensor, err: Tensor) -> None:
        """Blend per-ray errors err [k] (detached) at positions (cam, px, py) [k] into the maps."""
        idx = self.cell_index(cam, px, py)
        err = err.detach().reshape(-1).to(self.err)
        total = torch.zeros(self.err.numel(), device=self.err.device).index_add_(0, idx, err)
        count = torch.zeros_like(total).index_add_(0, idx, torch.ones_like(err))
        hit = count > 0
        mean = total[hit] / count[hit]
        flat, visits = self.err.view(-1), self.visits.view(-1)
        old = flat[hit]
        flat[hit] = torch.where(visits[hit] > 0, old + self.momentum * (mean - old), mean)
        visits[hit] = visits[hit] + count[hit]

    def values(self) -> Tensor:
        """The maps ``[n, gh, gw]`` with unvisited cells filled by the mean of the visited ones."""
        seen = self.visits > 0
        if not bool(seen.any()):
            return torch.ones_like(self.err)
        fill = self.err[seen].mean()
        return torch.where(seen, self.err, fill)


def bilinear_lookup(maps: Tensor, cam: Tensor, px: Tensor, py: Tensor, h: int, w: int) -> Tensor:
    """Bilinear value [k] of cell-centred maps [n, gh, gw] at continuous pixels (px, py) [k] of
    ``h x w`` views ``cam`` [k]; clamped to the border cells outside the cell centres."""
    n, gh, gw = maps.shape
    gx = px * gw / w - 0.5
    gy = py * gh / h - 0.5
    x0, y0 = torch.floor(gx), torch.floor(gy)
    tx, ty = (gx - x0).to(maps.dtype), (gy - y0).to(maps.dtype)
    ix0, ix1 = x0.long().clamp(0, gw - 1), (x0.long() + 1).clamp(0, gw - 1)
    iy0, iy1 = y0.long().clamp(0, gh - 1), (y0.long() + 1).clamp(0, gh - 1)
    flat = maps.reshape(-1)
    base = cam.long() * gh

    def at(iy: Tensor, ix: Tensor) -> Tensor:
        return flat[(base + iy) * gw + ix]

    top = at(iy0, ix0) * (1 - tx) + at(iy0, ix1) * tx
    bottom = at(iy1, ix0) * (1 - tx) + at(iy1, ix1) * tx
    return top * (1 - ty) + bottom * ty


class Categorical:
    """Draws from a discrete distribution over ``N`` items (any N; ``torch.multinomial`` stops at
    2^24) by a two-level inverse CDF: float64 over blocks of ``block`` items (a power of two), then
    a branch-free binary search in float32 inside the block.

    ``weights`` [N] >= 0, not all zero. ``prob`` [N] holds the normalised probabilities.
    """

    def __init__(self, weights: Tensor, block: int = 1024):
        weights = weights.reshape(-1).float()
        if not bool((weights >= 0).all()) or float(weights.sum()) <= 0:
            raise ValueError("Categorical: weights must be >= 0 and not all zero")
        self.n_items = weights.numel()
        self.block = 1 << max(0, min(block, self.n_items) - 1).bit_length()  # power of two >= min
        n_blocks = -(-self.n_items // self.block)
        padded = torch.zeros(n_blocks * self.block, device=weights.device)
        padded[: self.n_items] = weights
        padded = padded.view(n_blocks, self.block)
        block_mass = padded.double().sum(dim=1)  # [n_blocks]
        self.block_cdf = torch.cumsum(block_mass, 0) / block_mass.sum()  # last entry exactly 1
        local = torch.cumsum(padded, dim=1)
        self.local_cdf = (local / local[:, -1:].clamp_min(1e-30)).reshape(-1)  # [n_blocks * block]
        self.prob = weights / weights.double().sum().float()

    def sample(self, k: int, generator: torch.Generator) -> Tensor:
        """k indices [k] long (on the weights' device), drawn with replacement."""
        dev = self.local_cdf.device
        u1 = torch.rand(k, generator=generator, dtype=torch.float64, device="cpu").to(dev)
        u2 = torch.rand(k, generator=generator, device="cpu").to(dev)
        b = torch.searchsorted(self.block_cdf, u1, right=True).clamp_max(self.block_cdf.numel() - 1)
        base = b * self.block
        pos = torch.zeros_like(b)  # number of in-block cdf entries <= u2 (= searchsorted right)
        step = self.block // 2
        while step >= 1:
            cand = pos + step
            pos = torch.where(self.local_cdf[base + cand - 1] <= u2, cand, pos)
            step //= 2
        return (base + pos.clamp_max(self.block - 1)).clamp_max(self.n_items - 1)
