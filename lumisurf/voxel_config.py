"""Sparse-voxel method configuration (``Config.voxels``; used when ``model.kind = "voxels"``), by concept:
``voxels.model`` (what a voxel holds and how it renders), ``voxels.structure`` (the adaptive layout: pruning,
subdivision, the cap), ``voxels.train`` (learning rates, the training resolution) and ``voxels.loss`` (its loss
terms; a name shared with the neural-field ``loss`` section means the same term, e.g. ``eikonal_weight``).

Schedules are fractions of the one training progress in [0, 1] (``lumisurf.train.progress``). Defaults follow
SVRaster's synthetic-scene setting where it has one (learning rates, Adam's beta1 = 0.1, the exp-linear
density, a 64^3 start, 5 % subdivision per round, the pruning threshold ramp), except the starting density:
-5 instead of -10, because a short CPU run makes a small fraction of SVRaster's 20000 steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal


@dataclass
class VoxelModelConfig:
    mode: Literal["density", "sdf"] = "density"  # density: SVRaster; sdf: corner SDF with NeuS opacity
    init_from: str | None = None  # a voxels.pt (lumisurf extract of a voxel run) to start from instead
    init_level: int = 6  # 2^level cells a side at the start, inside the masks' visual hull when there are masks
    sh_bands: int = 4  # color SH bands (4 = degree 3)
    sh_band_every: float = 0.05  # one more active band every this much progress (starts with 1)
    geo_init: float = -5.0  # density mode: raw value of every corner at the start (SVRaster: -10, made for 20k
    # steps; a short CPU run at -10 spends its first hundreds of steps transparent: benchmarks/results/svraster.md)
    sdf_init_radius: float = 0.5  # sdf mode: the corners start as the SDF of a sphere of this radius
    inv_s_init: float = 50.0
    inv_s_final: float | None = None  # sdf mode: a floor under the learned inv_s rising geometrically from
    inv_s_until: float = 0.75  # inv_s_init to this by this progress (None: learned only, as NeuS)
    shading: Literal["sh", "nero", "segmented"] = "sh"  # sh: color per voxel (SVRaster); nero: deferred per-pixel
    # NeRO shading with model.nero's networks; segmented: deferred K-head mixture of model.assignment (sdf mode;
    # voxels/deferred.py)
    amp: bool = False  # deferred shading networks under bfloat16 autocast on CUDA (ignored on CPU)
    n_samples: int = 1  # density mode: midpoint samples per ray-voxel segment
    soft_sigma: float = 0.0  # > 0: Gaussian-footprint soft rasterization, pixels (voxels/soft.py; torch path)
    soft_temperature: float = 0.0  # > 0: softmax depth aggregation instead of compositing, scene units (ditto)
    backend: Literal["auto", "warp", "torch"] = "auto"


@dataclass
class VoxelStructureConfig:
    max_voxels: int = 400_000
    max_memory_mb: float | None = 2048.0  # the voxel cap also follows from this (parameters + Adam state)
    adapt_every: float = 0.05  # prune + subdivide every this much progress ...
    adapt_until: float = 0.75  # ... until this progress
    adapt_min_steps: int = 50  # and never sooner than this many steps after the start or the last round (a
    # round takes seconds: under a time budget, rounds due every step would eat it; voxels need steps to grow
    # their density before the first prune)
    prune_from: float = 1e-4  # max-blending-weight threshold, ramped linearly over the adapting period
    prune_to: float = 0.05
    prune_min_coverage: float = 0.5  # no pruning while the batch coverage (mask IoU of opacity > 0.5, or the
    # opaque fraction without masks; an EMA) is below this: from SVRaster's transparent start every voxel's
    # max weight is below any threshold until the density has grown (hundreds of steps)
    max_level: int | None = None  # never subdivide past this level (2^level cells a side; None: the footprint
    # rule alone)
    subdivide_fraction: float = 0.05  # of the voxels, by accumulated priority
    subdivide_min_footprint: float = 0.5  # children must stay larger than this x the smallest pixel footprint
    # over the training views (SVRaster's synthetic setting; finer voxels only overfit the training pixels)
    prune_views: int = 24  # max blending weights for pruning come from at least this many views (extra renders
    # of evenly spaced views the training steps missed since the last layout change; all views if fewer)


@dataclass
class VoxelTrainConfig:
    lr_geo: float = 0.025
    lr_geo_final: float | None = None  # the geometry's rate decays geometrically to this at the end (None:
    # constant, SVRaster's). Adam moves every corner by about the rate each step whatever its voxel's size, so a
    # constant rate keeps a fine SDF's gradient jittering by lr / voxel size
    lr_geo_by_size: bool = False  # scale each corner's step by its smallest voxel's edge / the starting edge
    lr_sh0: float = 0.01
    lr_shs: float = 0.00025
    lr_inv_s: float = 0.01  # sdf mode: log inv_s
    lr_shading: float = 0.005
    beta1: float = 0.1
    grad_clip: float | None = None  # clip the gradient norm over all parameters to this (None: SVRaster's none)
    smooth_step: float = 0.0  # sdf mode: explicit Laplacian smoothing of the corners after every step (fraction)
    downscale: int = 1  # render training views at 1 / this resolution


@dataclass
class VoxelLossConfig:
    tv_weight: float = 0.0  # mean squared corner difference along voxel edges (losses/voxels.py)
    eikonal_weight: float = 0.01  # sdf mode: (|grad| - 1)^2 at the voxel centres
    twist_weight: float = 0.0  # sdf mode: the non-affine part of the trilinear field (a curvature)
    smooth_weight: float = 0.0  # sdf mode: change of the gradient between face neighbours (a curvature)
    regularize_until: float = 1.0  # the four above apply until this progress
    ssim_weight: float = 0.0  # 1 - SSIM of the rendered view (SVRaster: 0.02)
    distortion_weight: float = 0.0  # mean per-pixel distortion (voxels.raster_torch.distortion; SVRaster: 0.1 ...
    distortion_from: float = 0.5  # ... from half way)
    depth_normal_weight: float = 0.0  # rendered normal against the normal of the rendered median depth
    depth_normal_from: float = 0.15  # (SVRaster's dtu_mesh setting: 0.001 from 15 %); a surface prior
    depth_weight: float = 0.0  # L1 between rendered and GT ray depth where the dataset has depth maps
    mask_l2_weight: float = 0.1  # L2 between the rendered opacity and the mask, where there are masks (the
    # neural field's loss.mask_weight is a cross entropy)


@dataclass
class VoxelConfig:
    model: VoxelModelConfig = field(default_factory=VoxelModelConfig)
    structure: VoxelStructureConfig = field(default_factory=VoxelStructureConfig)
    train: VoxelTrainConfig = field(default_factory=VoxelTrainConfig)
    loss: VoxelLossConfig = field(default_factory=VoxelLossConfig)


RENAMED = {  # flat names from before the sections whose meaning the shared names would misstate
    "mask_weight": "mask_l2_weight",
    "normal_weight": "depth_normal_weight",
    "normal_from": "depth_normal_from",
    "train_downscale": "downscale",
}


def _section_of() -> dict[str, str]:
    """Every voxel setting's section: name -> "model" | "structure" | "train" | "loss"."""
    return {f.name: s.name for s in fields(VoxelConfig) for f in fields(s.default_factory)}


def moved_voxel_key(key: str) -> str | None:
    """Today's dotted key of a flat voxel key written before the sections (2026-12-07), e.g.
    ``lr_geo`` -> ``train.lr_geo``; None when ``key`` was never one."""
    new = RENAMED.get(key, key)
    section = _section_of().get(new)
    return None if section is None else f"{section}.{new}"


def migrate_voxels(voxels: dict) -> None:
    """Run folders written before the sections held every voxel setting flat (and four under older names):
    move them into their sections, in place."""
    for key in [k for k in voxels if not isinstance(voxels[k], dict)]:
        moved = moved_voxel_key(key)
        if moved is not None:
            section, name = moved.split(".")
            voxels.setdefault(section, {})[name] = voxels.pop(key)
