"""Stage II warm start from a Stage I run (``material.init``): its material heads distilled into the material
field at the traced surface pixels, its direct-light network baked into the learned environment map, and its
material segments (segmented runs) attached to the pixels for ``material.segment_weight``.

Stage I's roughness is a lobe width of its own (IDE, ``shading/ide_roughness.py``) and its light network was
only trained at the widths its surface used: the light is baked at such a width and the materials get the GGX
roughness of what remains (``material.init_split``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lumisurf.config import Config
from lumisurf.errors import ConfigError
from lumisurf.jobs.extract import stage1_vertex_materials
from lumisurf.jobs.restore import load_run
from lumisurf.kinds import model_kind
from lumisurf.shading.ide_roughness import ggx_from_ide
from lumisurf.shading.lighting import Lighting
from lumisurf.shading.nero_light import exp_light
from lumisurf.train.material_priors import bake_env, distil_materials
from lumisurf.train.material_stage import SurfaceHits


def has_stage1_materials(cfg: Config) -> bool:
    """Whether the Stage I model has NeRO material heads and lights (``nero`` shading or a segmented model)."""
    return model_kind(cfg.model.kind).cls.config_has_stage1_materials(cfg)


def resolve_init(cfg: Config) -> str:
    """``material.init`` with ``auto`` resolved; refuses a Stage I start for runs without material heads."""
    mode = cfg.material.init
    if mode == "auto":
        return "stage1" if has_stage1_materials(cfg) else "constant"
    if mode != "constant" and not has_stage1_materials(cfg):
        raise ConfigError(
            f"material.init={mode} needs a Stage I run with material heads (presets nero, "
            f"lumisurf-seg); this run's preset is {cfg.preset!r}: use material.init=constant"
        )
    return mode


def stage1_direct_light(model, width: float = 0.0):
    """Stage I's outer (direct) light seen through lobe width ``width`` (IDE roughness) as a function of
    direction [N, 3] -> [N, 3]."""
    lights = model.color.lights

    def light(d: Tensor) -> Tensor:
        return exp_light(lights.outer(lights.ide(d, torch.full_like(d[:, :1], width))), lights.exp_max)

    return light


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of ``values`` [N] under non-negative ``weights`` [N] (plain median when they sum to 0)."""
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    if cum[-1] <= 0:
        return float(np.median(values))
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def split_width(mats: dict[str, np.ndarray], split: str, bake: bool) -> float:
    """The Stage I lobe width the light is baked at (``material.init_split``): 0 for ``sharp`` or when the
    light is not baked, else the median width weighted by the specular reflectance F0 (luminance)."""
    if split == "sharp" or not bake:
        return 0.0
    m = mats["metallic"]
    f0 = (m[:, None] * mats["albedo"] + 0.04 * (1.0 - m[:, None])) @ np.array([0.2126, 0.7152, 0.0722])
    return weighted_median(mats["roughness"], f0)


def stage2_roughness(rho: Tensor, width: float, split: str) -> Tensor:
    """Stage II's GGX roughness [N, 1] for Stage I widths ``rho`` [N, 1] after a light baked at ``width``."""
    if split == "sharp":
        return rho
    return ggx_from_ide((rho - width).clamp_min(0.0))


def warm_start(
    root: Path, cfg: Config, field, lighting: Lighting, hits: SurfaceHits, device, generator: torch.Generator
) -> tuple[SurfaceHits, dict]:
    """Initialise ``field`` and ``lighting`` as ``material.init`` says; returns the hits (with segment ids when
    the run is segmented) and a summary of what was done."""
    mode = resolve_init(cfg)
    field.init_constant(torch.tensor([0.5, 0.5, 0.5]), metallic=0.5, roughness=0.5)
    info: dict = {"init": mode}
    if mode == "constant" and not cfg.model.assignment.enabled:
        return hits, info
    model = load_run(root, str(device)).model
    mats = stage1_vertex_materials(model.vertex_shading(hits.points.detach().cpu().numpy(), None))
    hits = replace(hits, stage1_metallic=torch.as_tensor(mats["metallic"], dtype=torch.float32, device=device))
    if "material_id" in mats:
        hits = replace(hits, segment=torch.as_tensor(mats["material_id"], dtype=torch.int64, device=device))
        info["segments"] = int(hits.segment.max()) + 1
    split = cfg.material.init_split
    bake = mode in ("stage1", "light") and lighting.env.trainable
    width = split_width(mats, split, bake)
    info["init_light_width"] = width
    if mode in ("stage1", "materials"):
        targets = {
            "albedo": torch.as_tensor(mats["albedo"]),
            "metallic": torch.as_tensor(mats["metallic"])[:, None],
            "roughness": stage2_roughness(torch.as_tensor(mats["roughness"])[:, None], width, split).clamp(
                cfg.material.roughness_min, 1.0
            ),
        }
        targets = {k: v.to(device=device, dtype=torch.float32) for k, v in targets.items()}
        info["init_l1"] = distil_materials(field, hits.points, targets, cfg.material.init_steps, generator=generator)
        info.update({f"stage1_{k}_mean": float(np.mean(v)) for k, v in mats.items() if k in ("metallic", "roughness")})
    if bake:
        with torch.no_grad():
            fit = bake_env(lighting.env, stage1_direct_light(model, width))
            if fit is not None:
                info["init_env_fit_log_l1"] = fit
            info["init_env_mean"] = float(lighting.env.image().mean())
    return hits, info
