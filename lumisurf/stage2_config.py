"""Stage II configuration (``Config.material``): the material field, lighting and Monte-Carlo settings of
``lumisurf material`` and ``lumisurf relight``. Kept apart from ``lumisurf.config`` only for size; it is a
nested section of the one typed :class:`lumisurf.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    # where Stage II starts: ``stage1`` distils the Stage I material heads (NeRO / segmented runs) at the traced
    # surface into the field and bakes Stage I's direct-light network into the learned map; ``materials`` /
    # ``light`` do one half; ``constant`` is grey 0.5 everywhere; ``auto`` = stage1 when the run has heads
    init: Literal["auto", "constant", "stage1", "materials", "light"] = "auto"
    init_steps: int = 300  # regression steps of the distillation (batch 4096)
    # how Stage I's light and lobe width are split between Stage II's light and GGX roughness: ``matched`` bakes
    # the light at the median Stage I width rho_b (weighted by specular reflectance F0) and gives each point the
    # GGX roughness that blurs like the rest, rho - rho_b (shading/ide_roughness.py), so Stage II's first render
    # reproduces Stage I's; ``sharp`` bakes at width 0 (an input the light network never saw in training) and
    # takes Stage I's number as GGX roughness (before issue 35)
    init_split: Literal["matched", "sharp"] = "matched"
    env_height: int = 64  # learned lat-long map is env_height x 2*env_height texels
    # ``texels``: one parameter per texel (+ env_levels - 1 coarser levels added to it, coarse to fine);
    # ``mlp``: log radiance = MLP(PE(direction)) read at the texels (shading/envmap_neural.py), a smooth light
    env_model: Literal["texels", "mlp"] = "texels"
    env_levels: int = 1
    env_hidden: int = 64  # ``mlp``: width, layers and NeRF frequencies of the direction encoding
    env_layers: int = 3
    env_freqs: int = 4
    # light from occluded directions: none, a learned MLP (NeRO; fits the capture light only) or one bounce off
    # the mesh under the environment (``renderers/bounce.py``; transfers to new lighting)
    indirect: Literal["none", "learned", "bounce"] = "learned"
    relight_indirect: Literal["none", "bounce"] = "bounce"  # occluded directions when relighting
    bounce_dirs: int = 128  # directions of the bounce's per-vertex visibility table
    steps: int = 3000
    max_minutes: float | None = None
    batch_rays: int = 1024
    light_samples: int = 32  # Monte-Carlo directions per pixel per step
    specular_fraction: float = 0.5  # share of directions drawn from the GGX lobe (rest: cosine) ...
    env_sample_fraction: float = 0.5  # ... plus this share drawn from the environment map's luminance
    stratified: bool = False  # Latin-hypercube GGX / cosine directions per pixel (training and noise figures)
    env_sampler_every: int = 50  # steps between rebuilds of the environment sampler (learned lighting)
    lr: float = 1e-2
    env_lr: float = 2e-2
    # a map baked from Stage I's light (init stage1 / light) learns at this rate; 0 keeps it as baked (a learned
    # map drifts to a rough, partly metallic fit: benchmarks/results/materials.md)
    baked_env_lr: float = 0.0
    roughness_min: float = 0.02
    smooth_weight: float = 0.02  # |m(x) - m(x + eps)| on albedo / roughness / metallic
    smooth_eps: float = 0.02
    smooth_tangent: bool = False  # jitter in the tangent plane (NeRO, TensoSDF) instead of in 3-D
    # ``decorrelated``: (a - t)(b - t) of two independent half-sample estimates a, b, an unbiased estimate of the
    # squared error of the expected render; l1 / charbonnier of one noisy estimate favour low-variance (rough) BRDFs
    # ``log_l1``: |log(pred + 1/64) - log(target + 1/64)| of the sRGB values (dark pixels count as much as bright)
    loss: Literal["l1", "charbonnier", "log_l1", "decorrelated"] = "l1"
    # priors against the metal / roughness / light ambiguity (0 = off); each is measured in
    # benchmarks/results/materials.md
    metallic_binary_weight: float = 0.0  # mean m (1 - m): metallic pushed to 0 or 1
    # mean m: dielectric wherever metal explains the pixels no better (a dark metal looks like a dark dielectric).
    # Off: it fixes the metallic map of a dielectric but calls a metal that reflects dark light a black dielectric
    # (benchmarks/results/materials.md)
    dielectric_weight: float = 0.0
    # mean m (1 - max albedo): dielectric only where the albedo is dark, the case a metal cannot tell apart; a
    # bright coloured metal (gold) keeps its metallic
    dielectric_albedo_weight: float = 0.0
    # ``stage1``: that prior acts only where Stage I's metallic is below 0.5 (a mirror sphere whose fitted albedo
    # is dark is a metal Stage I already found); ``off``: everywhere
    dielectric_albedo_gate: Literal["off", "stage1"] = "off"
    # NeRO's early guard: metallic and roughness (on [0, 1]) pushed back inside [margin, 1 - margin] by a hinge
    # until progress ``saturation_until``, so the sigmoids do not saturate before the light is right
    saturation_weight: float = 0.0
    saturation_margin: float = 0.02
    saturation_until: float = 0.3
    segment_weight: float = 0.0  # metallic and roughness pulled to their segment's batch mean (segmented runs)
    env_white_weight: float = 0.0  # the learned map's mean color pulled to grey (white balance)
    env_tv_weight: float = 0.0  # total variation of the learned map's log radiance (smooth lighting)
    # solid-angle mean |log L - log L0| of a learned map against the map it started from (Stage I's bake)
    env_tether_weight: float = 0.0
    texture_size: int = 1024
    # relight / eval renders: rays per pixel (a k x k jittered grid when a square) and light directions per ray.
    # A near-mirror fit's noise is the pixel footprint, not the light: 16 x 4 (stratified) measured 33 dB of
    # noise where 4 x 128 gave 26 dB, at an eighth of the directions (benchmarks/results/relight_speed_probe.md)
    render_spp: int = 16
    render_light_samples: int = 4
    render_stratified: bool = True  # Latin-hypercube light directions in relight / eval renders
