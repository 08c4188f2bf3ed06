"""Method presets: nested patches over the :class:`lumisurf.config.Config` defaults."""
from __future__ import annotations

from lumisurf.config import Config, merge
from lumisurf.errors import ConfigError

# NeuS (Wang et al. 2021) as published: 8x256 SDF MLP (PE 6, skip at 4, geometric init, weight norm),
# 4x256 colour MLP (view PE 4), NeRF++ background (8x256), 64 + 64 samples (4 up-sampling steps of 16),
# 512 rays, lr 5e-4 with 5k warm-up and cosine decay to 0.05x over 300k steps, cos-anneal to 50k,
# eikonal 0.1, mask 0.1 (when masks exist). About 10 s a step on 2 CPU cores: a GPU preset.
NEUS_PAPER = {
    "preset": "neus-paper",
    "optim": {"lr": 5e-4, "warmup_steps": 5000, "lr_min_factor": 0.05},
    "train": {"max_steps": 300_000, "batch_rays": 512, "anneal_end": 50_000},
    "loss": {"rgb": "l1", "eikonal_weight": 0.1, "mask_weight": 0.1},
}

# The same method sized for CPU budgets (the measured cost is in the closing note of the foundation
# issue): every NeuS component is kept (geometric init, weight norm, skip, PE, variance, NeRF++
# background, hierarchical up-sampling, cos-anneal, eikonal); networks are 128 wide and 32 + 32
# samples per ray are used. Schedules are fractions of max_steps and shrink to a --max-minutes budget.
NEUS = {
    **NEUS_PAPER,
    "preset": "neus",
    "model": {"sdf": {"hidden": 128, "feature_dim": 128}, "color": {"hidden": 128},
              "background": {"hidden": 128, "layers": 4, "n_samples": 16}},
    "sampler": {"n_samples": 32, "n_importance": 32, "up_sample_steps": 4},
    "optim": {"lr": 5e-4, "warmup_steps": 500, "lr_min_factor": 0.05},
    "train": {"max_steps": 30_000, "batch_rays": 512, "anneal_end": 5_000},
}

PRESETS: dict[str, dict] = {"neus": NEUS, "neus-paper": NEUS_PAPER}
DEFAULT_PRESET = "neus"


def preset_config(name: str) -> Config:
    """The full config of preset ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of {sorted(PRESETS)}")
    return merge(Config(), PRESETS[name])
