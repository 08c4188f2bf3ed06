"""Sampling configuration (``Config.sampler``): samples along rays, the occupancy grid, and which training
pixels become rays (each adaptive pixel sampler has its own section). Kept apart from ``lumisurf.config``
only for size; a nested section of the one typed :class:`lumisurf.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lumisurf.errors import ConfigError

PixelSamplerName = Literal["uniform", "soft_mining", "context", "quadtree"]  # lumisurf.data.pixel_sampling


@dataclass
class SoftMiningConfig:
    """Soft mining (Kheradmand et al., CVPR 2024); defaults are the official code's."""

    alpha: float = 0.6  # loss correction 1/Q^alpha (official code: 0.6 synthetic, 0.8 LLFF)
    warmup: int = 1000  # alpha ramps 0 -> alpha over these steps
    step: float = 2e-4  # Langevin drift a on grad log Q (image coords in [0, 1]); = b^2/2
    noise: float = 0.02  # Langevin noise std b (image coords in [0, 1])
    floor: float = 0.1  # Q ~ error + floor * mean error
    reinit: float = 0.1  # lowest-error fraction re-drawn uniformly each step
    uniform: float = 0.1  # random fraction re-drawn uniformly each step


@dataclass
class ContextConfig:
    """Context prior (Zhang et al. 2023): 3x3 color standard deviation mixed with uniform."""

    fraction: float = 0.5  # rays drawn from the color-std prior; the rest uniform (paper)
    floor: float = 0.01  # prior clamped below at floor * mean std (paper)


@dataclass
class QuadtreeConfig:
    """Error-driven per-view quadtrees (Zhang et al. 2023)."""

    max_depth: int = 5  # leaves down to 1/2^depth of the image side (paper: 5)
    init_depth: int = 2  # uniform subdivision every rebuild starts from (paper: 2)
    threshold: float = 0.025  # split leaves whose mean L1 error exceeds this (~paper MSE 1e-3)
    max_leaves: int = 1024  # per view (4^max_depth: no cap)
    every: int = 500  # rebuild the trees from the error maps every k steps
    floor: float = 0.1  # leaf probability ~ (error + floor * mean error) * area


@dataclass
class SamplerConfig:
    n_samples: int = 64  # stratified samples inside the unit sphere
    n_importance: int = 64  # NeuS up-sampled samples (split over up_sample_steps)
    up_sample_steps: int = 4
    perturb: bool = True
    # the SDF the first up-sampling step reads at the stratified samples: the field itself, or (training only)
    # a trilinear lookup in the occupancy grid's last refresh (needs occupancy; the field until the first refresh)
    coarse_sdf: Literal["field", "occupancy"] = "field"
    # training samples that get the field with gradients: all, or only those whose interval weight, estimated
    # from the up-sampler's SDF values at the current sharpness, exceeds significant_threshold (with one
    # interval of margin); the others composite with zero opacity (nerfacc-style skipping of empty space)
    render_samples: Literal["all", "significant"] = "all"
    significant_threshold: float = 1e-4
    # with render_samples=significant: points uniform in the unit sphere that get the eikonal term besides the
    # rendered samples (which then all lie near the surface)
    eikonal_points: int = 256
    # nerfacc-style occupancy grid: rays march only occupied cells (near/far tightened to them, rays
    # through empty space skip the field); refreshed from the SDF every `occupancy_every` steps
    occupancy: bool = False
    occupancy_resolution: int = 64
    occupancy_every: int = 32
    # refreshes after a process's first evaluate only the occupied cells, their neighbours and this random
    # fraction of the others (nerfacc's partial update; 1: every cell, every time)
    occupancy_explore: float = 1.0
    occupancy_march_steps: int = 128
    # training-pixel sampler (lumisurf.data.pixel_sampling): uniform, soft_mining, context or quadtree
    pixels: PixelSamplerName = "uniform"
    error_map_downscale: int = 8  # adaptive samplers: per-view L1 error map at 1/k resolution
    error_map_momentum: float = 0.2  # EMA rate of the error maps (first visit of a cell: assigned)
    pixel_weights: bool = False  # context/quadtree: unbiased 1/(N p) loss weights (papers: off)
    soft_mining: SoftMiningConfig = field(default_factory=SoftMiningConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    quadtree: QuadtreeConfig = field(default_factory=QuadtreeConfig)


@dataclass
class SurfaceRenderConfig:
    """Surface-first rendering of trained SDF runs (``eval.surface``; render, eval, validation images):
    sphere-trace to the first crossing, volume-render a narrow band around it, and send rays where that is
    not safe (near misses, semi-transparent bands, unfinished traces) to the full sampler
    (``renderers/surface_first.py``). Off: every ray takes the full sampler."""

    enabled: bool = True
    band_samples: int = 16  # samples across the band
    band_width: float = 10.0  # band half-width in logistic widths of the SDF (|sdf| < band_width / inv_s)
    clear_width: float = 8.0  # a ray passing within clear_width / inv_s of the surface takes the full sampler
    solid: float = 0.999  # a band less opaque than this is kept only when the ray is clear behind it
    # when more than this fraction of a pilot trace (every 8th ray of a chunk) needs the full sampler (a messy,
    # semi-transparent field), the whole chunk takes the full sampler: tracing and bands would be wasted work
    max_fallback: float = 0.3
    trace_steps: int = 32  # sphere-tracing steps before a ray is handed to the full sampler
    relax: float = 0.9  # step = relax * sdf (the learned SDF is only roughly 1-Lipschitz)
    refine: int = 3  # regula-falsi steps on the bracketed crossing
    # rays traced together: the hash grid runs faster per point on large batches (one level's table stays in
    # cache); bands are shaded 8192 rays at a time
    chunk_rays: int = 65536


def migrate_sampler(sampler: dict) -> None:
    """Run folders written before the per-sampler sections (2026-12-01) held ``soft_mining_*``,
    ``context_*`` and ``quadtree_*`` keys: move them into their sections, in place."""
    for section in ("soft_mining", "context", "quadtree"):
        old = [k for k in sampler if k.startswith(section + "_")]
        if old:
            sub = sampler.setdefault(section, {})
            for k in old:
                sub[k[len(section) + 1 :]] = sampler.pop(k)


def check_sampler(cfg: SamplerConfig) -> None:
    """ConfigError for sampler settings the model cannot use."""
    if cfg.coarse_sdf == "occupancy" and not cfg.occupancy:
        raise ConfigError("sampler.coarse_sdf=occupancy reads the occupancy grid's SDF: set sampler.occupancy=true")
    if not 0.0 < cfg.occupancy_explore <= 1.0:
        raise ConfigError(f"sampler.occupancy_explore must be in (0, 1], got {cfg.occupancy_explore}")
    if cfg.significant_threshold < 0.0 or cfg.eikonal_points < 0:
        raise ConfigError("sampler.significant_threshold and sampler.eikonal_points must be >= 0")
