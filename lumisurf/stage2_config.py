"""Stage II configuration (``Config.material``): the material field, lighting and Monte-Carlo settings of
``lumisurf material`` and ``lumisurf relight``. Kept apart from ``lumisurf.config`` only for size; it is a
nested section of the one typed :class:`lumisurf.config.Config`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from lumisurf.encodings.hash_grid import HashGridConfig


def _material_grid() -> HashGridConfig:
    return HashGridConfig(n_levels=8, n_features=2, log2_table_size=16, base_resolution=8, max_resolution=256)


@dataclass
class MaterialStageConfig:
    """Stage II (``lumisurf material RUN``): BRDF fitting on the Stage I mesh by Monte-Carlo shading.

    Materials are a field over the normalised frame (hash grid + MLP -> albedo, metallic, roughness);
    the lighting is a learnable lat-long environment map (``learned``) or the HDR map the dataset names
    (``known``: synthetic scenes that record their lighting). Occluded light directions see a learned
    indirect-light MLP (``indirect: learned``) or nothing (``none``).
    """

    grid: HashGridConfig = field(default_factory=_material_grid)
    hidden: int = 64
    lighting: Literal["learned", "known"] = "learned"
    env_height: int = 64  # learned lat-long map is env_height x 2*env_height texels
    indirect: Literal["none", "learned"] = "learned"
    steps: int = 3000
    max_minutes: Optional[float] = None
    batch_rays: int = 1024
    light_samples: int = 32  # Monte-Carlo directions per pixel per step
    specular_fraction: float = 0.5  # share of directions drawn from the GGX lobe (rest: cosine) ...
    env_sample_fraction: float = 0.5  # ... plus this share drawn from the environment map's luminance
    env_sampler_every: int = 50  # steps between rebuilds of the environment sampler (learned lighting)
    lr: float = 1e-2
    env_lr: float = 2e-2
    roughness_min: float = 0.02
    smooth_weight: float = 0.02  # |m(x) - m(x + eps)| on albedo / roughness / metallic
    smooth_eps: float = 0.02
    loss: Literal["l1", "charbonnier"] = "l1"
    texture_size: int = 1024
    render_spp: int = 4  # relight / eval renders: rays per pixel (jittered inside the pixel)
    render_light_samples: int = 128
