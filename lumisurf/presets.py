"""Method presets: nested patches over the :class:`lumisurf.config.Config` defaults."""

from __future__ import annotations

from lumisurf.config import Config, merge
from lumisurf.errors import ConfigError

# NeuS (Wang et al. 2021) as published: 8x256 SDF MLP (PE 6, skip at 4, geometric init, weight norm),
# 4x256 color MLP (view PE 4), NeRF++ background (8x256), 64 + 64 samples (4 up-sampling steps of 16),
# 512 rays, lr 5e-4 with 5k warm-up and cosine decay to 0.05x over 300k steps, cos-anneal to 50k,
# eikonal 0.1, mask 0.1 (when masks exist). A GPU preset (its step cost on the CPU: README, Methods).
NEUS_PAPER = {
    "preset": "neus-paper",
    "optim": {"lr": 5e-4, "warmup": 5000 / 300_000, "lr_min_factor": 0.05},
    "train": {"max_steps": 300_000, "batch_rays": 512, "anneal_until": 50_000 / 300_000},
    "loss": {"rgb": "l1", "eikonal_weight": 0.1, "mask_weight": 0.1},
}

# The same method sized for CPU budgets (neus-paper is the published size): every NeuS component is kept (geometric
# init, weight norm, skip, PE, variance, NeRF++ background, hierarchical up-sampling, cos-anneal, eikonal); networks
# are 128 wide and 32 + 32 samples per ray are used. Schedules are fractions of the training progress (steps, or a
# --max-minutes budget).
NEUS = {
    **NEUS_PAPER,
    "preset": "neus",
    "model": {
        "sdf": {"hidden": 128, "feature_dim": 128},
        "color": {"hidden": 128},
        "background": {"hidden": 128, "layers": 4, "n_samples": 16},
    },
    "sampler": {"n_samples": 32, "n_importance": 32, "up_sample_steps": 4},
    "optim": {"lr": 5e-4, "warmup": 500 / 30_000, "lr_min_factor": 0.05},
    "train": {"max_steps": 30_000, "batch_rays": 512, "anneal_until": 5_000 / 30_000},
}

# Instant-NSR (Zhao et al. 2022; instant-nsr-pl defaults): hash SDF (16 levels x 2 features, 2^19, res
# 16..2048) -> 2x64 softplus(100) decoder, finite-difference normals with step 5e-3 -> 5e-4, color MLP
# 3x64 with SH degree-4 view encoding, Huber rgb + 0.1 eikonal, Adam 1e-2 decaying to 1.6e-3 (cosine here).
INSTANT_NSR = {
    "preset": "instant-nsr",
    "model": {
        "sdf": {
            "backend": "hash",
            "hidden": 64,
            "layers": 3,
            "skip_in": [],
            "multires": 0,
            "feature_dim": 15,
            "weight_norm": False,
            "normals": "finite_difference",
            "grid": {
                "n_levels": 16,
                "n_features": 2,
                "log2_table_size": 19,
                "base_resolution": 16,
                "max_resolution": 2048,
            },
        },
        "color": {"hidden": 64, "layers": 3, "view_encoding": "sh", "sh_degree": 4, "weight_norm": False},
        "background": {"hidden": 64, "layers": 2, "multires": 6, "n_samples": 16},
    },
    "sampler": {"n_samples": 32, "n_importance": 32, "up_sample_steps": 2, "occupancy": True},
    "loss": {"rgb": "huber", "eikonal_weight": 0.1, "mask_weight": 0.1},
    "schedule": {"fd_eps_mode": "exp", "fd_eps_start": 5e-3, "fd_eps_end": 5e-4},
    "optim": {"lr": 1e-2, "warmup": 500 / 20_000, "lr_min_factor": 0.16},
    "train": {"max_steps": 20_000, "batch_rays": 1024, "anneal_until": 2_000 / 20_000},
}

# Neuralangelo (Li et al. 2023): numerical (finite-difference) gradients whose step follows the finest
# active grid cell, coarse-to-fine level activation, curvature (Laplacian) loss; hash SDF with an MLP
# decoder. Grid kept at 2 features per level for CPU budgets (the paper uses 8).
NEURALANGELO = {
    **INSTANT_NSR,
    "preset": "neuralangelo",
    "model": {**INSTANT_NSR["model"], "sdf": {**INSTANT_NSR["model"]["sdf"], "multires": 6}},
    "loss": {"rgb": "l1", "eikonal_weight": 0.1, "mask_weight": 0.1, "curvature_weight": 5e-4},
    "schedule": {
        "fd_eps_mode": "grid",
        "fd_eps_end": 5e-4,
        "grid_start_levels": 4,
        "grid_levels_until": 12 * 1000 / 20_000,
    },
}

# lumisurf: our CPU default. Hash SDF with ANALYTIC normals (the grid kernel's Jacobian: no double
# backward through the grid, no six extra evaluations) and a 1 x 64 decoder (instant-nsr-pl, NeuS2), occupancy-grid
# skipping, coarse-to-fine levels, a small hash table (2^17) that fits caches, SH color network. Per step (issue 32,
# benchmarks/results/speed_issue32.md): only the samples whose weight can matter get the field with gradients
# (plus 256 random eikonal points), 16 + 32 samples a ray, the up-sampler's last evaluation skipped, and the
# occupancy grid refreshed partially (occupied cells, their neighbours, 1/8 of the rest).
LUMISURF = {
    **INSTANT_NSR,
    "preset": "lumisurf",
    "model": {
        **INSTANT_NSR["model"],
        "sdf": {
            **INSTANT_NSR["model"]["sdf"],
            "normals": "analytic",
            "multires": 0,
            "layers": 2,
            "grid": {
                "n_levels": 16,
                "n_features": 2,
                "log2_table_size": 17,
                "base_resolution": 16,
                "max_resolution": 1024,
            },
        },
    },
    # uniform pixel sampling: context sampling's rays hit the object, so its steps cost more and it lost at the
    # 5-min budget (benchmarks/results/ablate_glossy_bunny)
    "sampler": {
        **INSTANT_NSR["sampler"],
        "pixels": "uniform",
        "n_samples": 16,
        "render_samples": "significant",
        "occupancy_explore": 0.125,
    },
    "loss": {"rgb": "l1", "eikonal_weight": 0.1, "mask_weight": 0.1},
    # the A-E phase schedule drives the optimizer groups; without a material assignment phases C/D only
    # switch on the segmentation terms, which this preset leaves off (see lumisurf-seg)
    "schedule": {"grid_start_levels": 8, "grid_levels_until": 8 * 250 / 20_000, "phases": "abcde"},
}

# NeRO Stage I (Liu et al. 2023) as published: NeuS geometry (8x256 SDF MLP, NeRF++ background, 64 + 64
# samples, 512 rays, lr 5e-4 warm-up 5k + cosine over 300k, cos-anneal to 50k) with NeRO's reflective
# shading: split-sum GGX with direct/indirect light MLPs (4 layers x 256) blended by an occlusion MLP that an
# L1 loss (weight 1) ties to hit probabilities marched through the SDF at 2048 surface points a step
# (64 steps); Charbonnier rgb, eikonal 0.1, mask 0.1. A GPU preset. (NeRO marches 64 + 16 importance samples,
# starts the occlusion loss at 20k steps and sums its Charbonnier over channels before the square root.)
NERO_PAPER = {
    **NEUS_PAPER,
    "preset": "nero-paper",
    "model": {"shading": "nero"},
    "loss": {"rgb": "charbonnier", "eikonal_weight": 0.1, "mask_weight": 0.1, "occlusion_weight": 1.0},
}

# NeRO Stage I shading on lumisurf's CPU geometry backbone (the LUMISURF preset's hash SDF with analytic
# normals, occupancy grid, sampler, coarse-to-fine schedule and optimiser); the NeRO networks are 3 layers
# x 64 without weight norm, and 256 surface points a step get a 32-step occlusion march. Deferred: each ray is
# shaded once at its surface point (models/deferred.py): 1.7-2.1x the steps of per-sample shading in 5 minutes
# and a lower Chamfer on the generated glossy suite (benchmarks/results/sweep_refl34_*.md). With Ref-NeuS'
# reflection-aware terms (losses/reflection.py): the photometric loss down-weighted where a point's colour
# varies across views, and normal smoothness where that happens on a flat (edge-free) patch of the image; they
# keep a mirror's reflections out of its geometry (sweep_refl34_reflection_suite_s1.md). Our default for shiny
# objects.
NERO = {
    **LUMISURF,
    "preset": "nero",
    "model": {
        **LUMISURF["model"],
        "shading": "nero",
        "shade_at": "surface",
        "nero": {"hidden": 64, "layers": 3, "weight_norm": False, "occ_points": 256, "occ_steps": 32},
    },
    "loss": {
        "rgb": "charbonnier",
        "eikonal_weight": 0.1,
        "mask_weight": 0.1,
        "occlusion_weight": 1.0,
        "reflection": {"anomaly": True, "smooth_weight": 1.0},
    },
}

# Soft material segmentation (objects that mix materials): the nero preset's geometry and lights with K = 2
# heads (GGX specular, Lambert) mixed by a hash-grid assignment field, under the A-E phase schedule.
# A/B (the first 70 %): the specular head renders alone, i.e. NeRO's Stage I, while the Lambert head fits the
# same pixels on a detached context; C starts with the material lift (``train/material_lift.py``: k-means of
# the specular head's albedo / metallic / roughness at 20k surface points, a crease-weighted min-cut, the
# assignment fitted to it), then C/D train the mixture with the lift, entropy, energy, boundary and
# reprojection-consistency terms; E = Stage II (`lumisurf material`).
LUMISURF_SEG = {
    **NERO,
    "preset": "lumisurf-seg",
    "model": {
        **NERO["model"],
        "shade_at": "samples",  # K heads mixed per sample (deferred shading shades one point a ray)
        "assignment": {
            "enabled": True,
            "K": 2,
            "heads": ["specular", "lambert"],
            "init": "materials",
            "pretrain_head": "specular",
        },
    },
    # the reflection terms of nero are not measured with segmentation yet: off here
    "loss": {
        **NERO["loss"],
        "reflection": {"anomaly": False, "smooth_weight": 0.0},
        "segmentation": {"entropy_weight": 1e-2},
    },
    "schedule": {
        **NERO.get("schedule", {}),
        "phases": "abcde",
        "phase_ends": [0.05, 0.7, 0.85, 1.0],
        "assignment_lr_scale": 1.0,
    },
}

# Sparse voxels rasterized front to back (SVRaster; lumisurf/voxels, issue 14): no MLP, a trilinear corner
# value and SH color per voxel, one training view per step, prune/subdivide on the progress clock. "svraster"
# is SVRaster's density model; "svraster-sdf" keeps an SDF on the corners with NeuS' interval opacity so the
# mesh is its zero level set. Both are new and untuned: see the README before relying on them.
SVRASTER = {"preset": "svraster", "model": {"kind": "voxels"}, "voxels": {"model": {"mode": "density"}}}
SVRASTER_SDF = {
    "preset": "svraster-sdf",
    "model": {"kind": "voxels"},
    "voxels": {"model": {"mode": "sdf", "inv_s_init": 50.0}, "train": {"lr_geo": 0.005}},
}

PRESETS: dict[str, dict] = {
    "neus": NEUS,
    "neus-paper": NEUS_PAPER,
    "instant-nsr": INSTANT_NSR,
    "neuralangelo": NEURALANGELO,
    "lumisurf": LUMISURF,
    "nero": NERO,
    "nero-paper": NERO_PAPER,
    "lumisurf-seg": LUMISURF_SEG,
    "svraster": SVRASTER,
    "svraster-sdf": SVRASTER_SDF,
}
DEFAULT_PRESET = "lumisurf"


def preset_config(name: str) -> Config:
    """The full config of preset ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of {sorted(PRESETS)}")
    return merge(Config(), PRESETS[name])
