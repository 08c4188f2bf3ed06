"""Training-pixel samplers behind one interface, chosen by ``sampler.pixels``.

* ``uniform``: every pixel of every view equally likely (``batch.weight`` None).
* ``soft_mining`` (Kheradmand et al., CVPR 2024): persistent samples moved by Langevin steps
  towards high error, importance distribution ``Q ~ error + floor * mean``, loss correction
  ``1 / sg(Q)^alpha`` with alpha ramped up from 0.
* ``context`` (Zhang et al. 2023): a fixed prior ~ the 3x3 color standard deviation (edges and
  texture), mixed with uniform.
* ``quadtree`` (Zhang et al. 2023): per-view quadtrees whose leaves split where the error is high;
  a leaf is drawn ~ error * area, then a pixel uniformly inside it.

Interface: ``sample(n_rays, generator) -> PixelBatch`` and ``update(batch, per_ray_error, step)``
(detached per-ray L1 error [n_rays] of that batch, called after each optimiser step). Errors are kept
in low-resolution per-view maps (:class:`~lumisurf.data.pixel_sampling.error_maps.ErrorMaps`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from lumisurf.data.images import as_float
from lumisurf.data.pixel_sampling.base import PixelBatch, PixelSampler, UniformPixelSampler
from lumisurf.data.pixel_sampling.error_maps import Categorical, ErrorMaps, bilinear_lookup
from lumisurf.data.scene import Split
from lumisurf.registry import Registry
from lumisurf.sampler_config import SamplerConfig

PIXEL_SAMPLERS: Registry[Callable[..., PixelSampler]] = Registry("pixel sampler")
PIXEL_SAMPLERS.register("uniform")(UniformPixelSampler)

LUMA = (0.299, 0.587, 0.114)  # Rec. 601 grey, as cv2's RGB->GRAY used by Zhang et al.


def build_pixel_sampler(cfg: SamplerConfig, split: Split, device) -> PixelSampler:
    """The sampler named by ``cfg.pixels`` over the training ``split``."""
    return PIXEL_SAMPLERS.get(cfg.pixels)(split, device, cfg)


def normalized_weights(w: Tensor) -> Tensor:
    """Scale positive weights [k] to mean 1."""
    return w / w.mean().clamp_min(1e-12)


def unbiased_weights(p_pixel: Tensor, n_pixels: int) -> Tensor:
    """Importance weights ``1 / (N p)`` [k] of pixels drawn with probabilities p_pixel [k], mean 1."""
    return normalized_weights(1.0 / (p_pixel.double() * n_pixels).clamp_min(1e-12)).float()


# ----------------------------------------------------------------------------- soft mining


def soft_mining_weights(q: Tensor, alpha: float, clamp_min: float = 0.2) -> Tensor:
    """Loss correction ``Q^-alpha`` [k] for density values q [k] > 0, normalised to mean 1 and
    clamped to ``[clamp_min, 1 + std]`` relative to the mean (as the official code clamps)."""
    w = normalized_weights(q.double().clamp_min(1e-12) ** (-alpha))
    w = torch.minimum(w.clamp_min(clamp_min), 1.0 + w.std(unbiased=False))
    return normalized_weights(w).float()


@PIXEL_SAMPLERS.register("soft_mining")
class SoftMiningPixelSampler(PixelSampler):
    """Persistent samples moved by ``u <- u + a grad log Q(u) + b noise`` (u: image coords in
    [0, 1]^2, grad by central differences of one error-map cell); samples that leave the image, the
    ``reinit`` fraction of lowest error and a random ``uniform`` fraction are re-drawn uniformly."""

    def __init__(self, split: Split, device, cfg: SamplerConfig | None = None):
        super().__init__(split, device)
        cfg = cfg or SamplerConfig()
        ds = max(1, cfg.error_map_downscale)
        self.errors = ErrorMaps(
            self.n, self.h, self.w, math.ceil(self.h / ds), math.ceil(self.w / ds), cfg.error_map_momentum, self.device
        )
        self.alpha, self.warmup = cfg.soft_mining.alpha, cfg.soft_mining.warmup
        self.step_size, self.noise = cfg.soft_mining.step, cfg.soft_mining.noise
        self.floor = cfg.soft_mining.floor
        self.reinit_frac, self.uniform_frac = cfg.soft_mining.reinit, cfg.soft_mining.uniform
        self.cam: Tensor | None = None  # [k] long
        self.xy: Tensor | None = None  # [k, 2] continuous pixel (x, y)
        self.last_error: Tensor | None = None  # [k] error of the samples at their current place
        self.step = 0

    def current_alpha(self) -> float:
        ramp = 1.0 if self.warmup <= 0 else min(1.0, self.step / self.warmup)
        return self.alpha * ramp

    def density(self) -> Tensor:
        """Unnormalised importance density Q ``[n, gh, gw]``: error + floor * mean error."""
        e = self.errors.values()
        return e + self.floor * e.mean() + 1e-8

    def _uniform_positions(self, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        cam = torch.randint(0, self.n, (k,), generator=generator, device="cpu").to(self.device)
        xy = torch.rand(k, 2, generator=generator, device="cpu").to(self.device)
        return cam, xy * torch.tensor([self.w, self.h], device=self.device, dtype=xy.dtype)

    def _grad_log_q(self, q: Tensor) -> Tensor:
        """grad_u log Q [k, 2] at the samples (u = xy / (w, h)): central differences of Q over one
        cell, divided by Q (Q [n, gh, gw] read bilinearly)."""
        cam, x, y = self.cam, self.xy[:, 0], self.xy[:, 1]
        dx, dy = self.w / q.shape[2], self.h / q.shape[1]  # one cell, in pixels

        def at(xx: Tensor, yy: Tensor) -> Tensor:
            return bilinear_lookup(q, cam, xx, yy, self.h, self.w)

        q0 = at(x, y)
        gx = (at(x + dx, y) - at(x - dx, y)) / (q0 * (2 * dx / self.w))
        gy = (at(x, y + dy) - at(x, y - dy)) / (q0 * (2 * dy / self.h))
        return torch.stack([gx, gy], dim=-1)

    def _move(self, generator: torch.Generator) -> None:
        """One Langevin step of every sample, then the re-initialisations."""
        k = self.xy.shape[0]
        scale = torch.tensor([self.w, self.h], device=self.device, dtype=self.xy.dtype)
        noise = torch.randn(k, 2, generator=generator, device="cpu").to(self.device)
        fresh_cam, fresh_xy = self._uniform_positions(k, generator)
        lucky = torch.rand(k, generator=generator, device="cpu").to(self.device) < self.uniform_frac
        u = self.xy / scale + self.step_size * self._grad_log_q(self.density()) + self.noise * noise
        xy = u * scale
        redraw = lucky | (xy[:, 0] < 0) | (xy[:, 0] >= self.w) | (xy[:, 1] < 0) | (xy[:, 1] >= self.h)
        n_low = int(self.reinit_frac * k)
        if n_low > 0 and self.last_error is not None:
            low = torch.topk(self.last_error, n_low, largest=False).indices
            redraw[low] = True
        self.xy = torch.where(redraw[:, None], fresh_xy, xy)
        self.cam = torch.where(redraw, fresh_cam, self.cam)

    def sample(self, n_rays: int, generator: torch.Generator) -> PixelBatch:
        if self.xy is None or self.xy.shape[0] != n_rays:
            self.cam, self.xy = self._uniform_positions(n_rays, generator)
        elif self.last_error is not None:
            self._move(generator)
        self.last_error = None
        col = self.xy[:, 0].floor().long().clamp(0, self.w - 1)
        row = self.xy[:, 1].floor().long().clamp(0, self.h - 1)
        q = bilinear_lookup(self.density(), self.cam, col.float() + 0.5, row.float() + 0.5, self.h, self.w)
        return self.batch(self.cam, row, col, soft_mining_weights(q, self.current_alpha()))

    def update(self, batch: PixelBatch, per_ray_error: Tensor, step: int) -> None:
        err = per_ray_error.detach().reshape(-1).float()
        self.errors.update(batch.cam_idx, batch.px, batch.py, err)
        if self.xy is not None and err.numel() == self.xy.shape[0]:
            self.last_error = err.to(self.device)
        self.step = step + 1


# ----------------------------------------------------------------------------- context prior


def color_std_map(images: Tensor) -> Tensor:
    """Grey-level (Rec. 601) of the per-channel 3x3 color standard deviation [n, H, W] of images
    [n, H, W, 3] (uint8 or float in [0, 1]; borders reflected), as Zhang et al.'s ``sqrt(blur(I^2) - blur(I)^2)``."""
    out = []
    for img in images:  # one view at a time (converted to float one at a time): bounded memory
        x = as_float(img).permute(2, 0, 1)[None]  # [1, 3, H, W]
        luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = F.pad(x, (1, 1, 1, 1), mode="replicate" if min(x.shape[-2:]) < 2 else "reflect")
        mean = F.avg_pool2d(x, 3, stride=1)
        sq = F.avg_pool2d(x * x, 3, stride=1)
        std = (sq - mean * mean).clamp_min(0).sqrt()
        out.append((std * luma).sum(dim=1)[0])
    return torch.stack(out)


@PIXEL_SAMPLERS.register("context")
class ContextPixelSampler(PixelSampler):
    """``fraction`` of the rays from the color-std prior (per view: clamped below at
    ``floor * mean``, normalised; views equally likely), the rest uniform; optional unbiased
    weights ``1 / (N p_mix)`` when ``cfg.pixel_weights`` (off in the paper)."""

    def __init__(self, split: Split, device, cfg: SamplerConfig | None = None):
        super().__init__(split, device)
        cfg = cfg or SamplerConfig()
        self.fraction, self.use_weights = cfg.context.fraction, cfg.pixel_weights
        std = color_std_map(split.images).reshape(self.n, -1)  # [n, H*W]
        prior = std.clamp_min(cfg.context.floor * std.mean(dim=1, keepdim=True)) + 1e-12
        prior = prior / prior.sum(dim=1, keepdim=True) / self.n
        self.prior = Categorical(prior.reshape(-1).to(self.device))

    def sample(self, n_rays: int, generator: torch.Generator) -> PixelBatch:
        k = int(round(n_rays * self.fraction))
        from_prior = self.prior.sample(k, generator)
        uniform = torch.randint(0, self.n_pixels, (n_rays - k,), generator=generator, device="cpu")
        flat = torch.cat([from_prior, uniform.to(self.device)])
        weight = None
        if self.use_weights:
            p_mix = self.fraction * self.prior.prob[flat] + (1.0 - self.fraction) / self.n_pixels
            weight = unbiased_weights(p_mix, self.n_pixels)
        return self.batch_flat(flat, weight)


# ----------------------------------------------------------------------------- quadtree


def subdivide_levels(err: Tensor, init_depth: int, max_depth: int, threshold: float, max_leaves: int) -> Tensor:
    """Leaf depth per finest cell ``[n, g, g]`` (g = 2^max_depth) of quadtrees over error maps err
    [n, g, g]: start uniform at ``init_depth``; a leaf splits while its mean error > threshold and
    its depth < max_depth, at most ``max_leaves`` leaves per view (largest errors split first)."""
    n, g, _ = err.shape
    level = torch.full((n, g, g), init_depth, dtype=torch.long, device=err.device)
    n_leaves = torch.full((n,), 4**init_depth, dtype=torch.long, device=err.device)
    for depth in range(init_depth, max_depth):
        s = 2 ** (max_depth - depth)  # finest cells per leaf side at this depth
        e = F.avg_pool2d(err[:, None], s)[:, 0].reshape(n, -1)  # [n, 4^depth]
        cand = (level[:, ::s, ::s].reshape(n, -1) == depth) & (e > threshold)
        order = torch.argsort(torch.where(cand, e, torch.full_like(e, -1.0)), dim=1, descending=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(e.shape[1], device=e.device).expand_as(order))
        allowed = ((max_leaves - n_leaves) // 3).clamp_min(0)
        split = cand & (rank < allowed[:, None])
        n_leaves = n_leaves + 3 * split.sum(dim=1)
        side = 2**depth
        up = split.reshape(n, side, side).repeat_interleave(s, 1).repeat_interleave(s, 2)
        level = torch.where(up, torch.full_like(level, depth + 1), level)
    return level


@PIXEL_SAMPLERS.register("quadtree")
class QuadtreePixelSampler(PixelSampler):
    """Error-driven quadtrees per view over a ``2^D x 2^D`` error grid (D = max depth, capped so a
    finest cell holds at least one pixel), rebuilt every ``quadtree.every`` steps."""

    def __init__(self, split: Split, device, cfg: SamplerConfig | None = None):
        super().__init__(split, device)
        cfg = cfg or SamplerConfig()
        self.depth = max(0, min(cfg.quadtree.max_depth, int(math.log2(min(self.h, self.w)))))
        self.init_depth = min(max(0, cfg.quadtree.init_depth), self.depth)
        self.g = 2**self.depth
        self.errors = ErrorMaps(self.n, self.h, self.w, self.g, self.g, cfg.error_map_momentum, self.device)
        self.threshold, self.max_leaves = cfg.quadtree.threshold, cfg.quadtree.max_leaves
        self.every, self.floor, self.use_weights = cfg.quadtree.every, cfg.quadtree.floor, cfg.pixel_weights
        self.level = torch.full((self.n, self.g, self.g), self.init_depth, dtype=torch.long, device=self.device)
        self._build_leaves()

    def subdivide(self) -> None:
        """Rebuild every tree from the current error maps."""
        self.level = subdivide_levels(
            self.errors.values(), self.init_depth, self.depth, self.threshold, max(self.max_leaves, 4**self.init_depth)
        )
        self._build_leaves()

    def _build_leaves(self) -> None:
        """Leaves as (view, top-left finest cell, side in cells) and their pixel boxes."""
        side = 2 ** (self.depth - self.level)  # [n, g, g]
        ys = torch.arange(self.g, device=self.device).view(1, -1, 1)
        xs = torch.arange(self.g, device=self.device).view(1, 1, -1)
        corner = (ys % side == 0) & (xs % side == 0)
        v, y0, x0 = corner.nonzero(as_tuple=True)
        s = side[v, y0, x0]
        self.leaf_view, self.leaf_cells = v, (y0, x0, s)
        g, h, w = self.g, self.h, self.w
        self.r0, self.r1 = (y0 * h + g - 1) // g, ((y0 + s) * h + g - 1) // g  # pixel rows [r0, r1)
        self.c0, self.c1 = (x0 * w + g - 1) // g, ((x0 + s) * w + g - 1) // g
        self.area = ((self.r1 - self.r0) * (self.c1 - self.c0)).float()

    def leaf_errors(self) -> Tensor:
        """Mean map error [n_leaves] over each leaf's cells (summed-area table)."""
        e = self.errors.values()
        sat = F.pad(e.cumsum(1).cumsum(2), (1, 0, 1, 0))  # [n, g+1, g+1]
        y0, x0, s = self.leaf_cells
        v = self.leaf_view
        total = sat[v, y0 + s, x0 + s] - sat[v, y0, x0 + s] - sat[v, y0 + s, x0] + sat[v, y0, x0]
        return total / (s * s).float()

    def leaf_probabilities(self) -> Tensor:
        e = self.leaf_errors()
        mass = (e + self.floor * e.mean() + 1e-8) * self.area
        return mass / mass.sum()

    def sample(self, n_rays: int, generator: torch.Generator) -> PixelBatch:
        prob = self.leaf_probabilities()
        leaf = Categorical(prob).sample(n_rays, generator)
        u = torch.rand(n_rays, 2, generator=generator, device="cpu").to(self.device)
        n_rows, n_cols = (self.r1 - self.r0)[leaf], (self.c1 - self.c0)[leaf]
        rows = self.r0[leaf] + torch.minimum((u[:, 1] * n_rows).long(), n_rows - 1)
        cols = self.c0[leaf] + torch.minimum((u[:, 0] * n_cols).long(), n_cols - 1)
        weight = None
        if self.use_weights:
            weight = unbiased_weights(prob[leaf] / self.area[leaf], self.n_pixels)
        return self.batch(self.leaf_view[leaf], rows, cols, weight)

    def update(self, batch: PixelBatch, per_ray_error: Tensor, step: int) -> None:
        self.errors.update(batch.cam_idx, batch.px, batch.py, per_ray_error)
        if self.every > 0 and (step + 1) % self.every == 0:
            self.subdivide()
