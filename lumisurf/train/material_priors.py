"""Stage II warm start from what Stage I learned, and the Stage II priors.

``distil_materials``: regress the Stage II material field onto Stage I's albedo / metallic / roughness at the
traced surface points (L1, a few hundred Adam steps). ``bake_env``: fill a lat-long map with a light function
of direction (Stage I's direct-light network). The prior terms work on one batch of shaded surface pixels
(``material_priors``) or on the learned map (``env_priors``); every weight of 0 switches its term off.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lumisurf.shading.envmap import latlong_directions, row_solid_angles

MATERIAL_KEYS = ("albedo", "metallic", "roughness")


def distil_materials(
    field,
    points: Tensor,
    targets: dict[str, Tensor],
    steps: int,
    lr: float = 1e-2,
    batch: int = 4096,
    generator: torch.Generator | None = None,
) -> float:
    """Fit ``field`` (x [N, 3] -> albedo [N, 3], metallic, roughness [N, 1]) to ``targets`` at ``points``
    [M, 3] (same keys, [M, C]) by L1; returns the last batch's mean L1 over the three maps."""
    opt = torch.optim.Adam(field.parameters(), lr=lr)
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(0, points.shape[0], (batch,), generator=generator).to(points.device)
        pred = field(points[idx])
        loss = sum((pred[k] - targets[k][idx]).abs().mean() for k in MATERIAL_KEYS) / len(MATERIAL_KEYS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


@torch.no_grad()
def bake_env(env, light: Callable[[Tensor], Tensor], min_value: float = 1e-4) -> float | None:
    """Set ``env`` (an EnvironmentMap or a NeuralEnvironment) to ``light(dirs [N, 3]) -> [N, 3]`` (linear
    radiance) at its texel centres; returns the neural map's fit error (mean |log error|), None for texels."""
    log = env.log_image()
    h, w = log.shape[:2]
    dirs, _ = latlong_directions(h, w, device=log.device)
    rad = torch.cat([light(d) for d in dirs.reshape(-1, 3).split(8192)])
    return env.set_image(rad.reshape(h, w, 3).float(), min_value)


def _segment_spread(values: Tensor, segment: Tensor) -> Tensor:
    """Mean |v_i - mean of v over i's segment in the batch| (values [B, C], segment [B] int)."""
    n_seg = int(segment.max()) + 1
    ones = torch.ones_like(values[:, :1])
    count = torch.zeros(n_seg, 1, dtype=values.dtype, device=values.device).index_add(0, segment, ones)
    total = torch.zeros(n_seg, values.shape[1], dtype=values.dtype, device=values.device).index_add(0, segment, values)
    mean = total / count.clamp_min(1.0)
    return (values - mean[segment]).abs().mean()


def saturation_hinge(values: Tensor, margin: float) -> Tensor:
    """Mean over rows of the summed hinges ``relu(margin - v) + relu(v - (1 - margin))`` (values [B, C] in
    [0, 1]): zero inside [margin, 1 - margin], growing linearly outside."""
    return (torch.relu(margin - values) + torch.relu(values - (1.0 - margin))).sum(-1).mean()


def material_priors(
    mat: dict[str, Tensor],
    cfg,
    segment: Tensor | None = None,
    progress: float = 0.0,
    stage1_metallic: Tensor | None = None,
) -> dict[str, Tensor]:
    """Weighted prior losses on one batch of materials (keys of MaterialField's output).

    ``metallic_binary``: mean m (1 - m) (zero at m = 0 and m = 1); ``dielectric``: mean m (a dark metal and a
    dark dielectric look alike: F0 = albedo m + 0.04 (1 - m)); ``dielectric_albedo``: mean m (1 - max albedo)
    with the albedo held fixed (dark metal only), with ``dielectric_albedo_gate=stage1`` only where Stage I's
    metallic ``stage1_metallic`` [B] is below 0.5 (a metal Stage I found is left alone); ``saturation``: the
    hinge of metallic and roughness (rescaled from [cfg.roughness_min, 1] to [0, 1]) while ``progress`` <
    ``saturation_until``; ``segment``: metallic and roughness spread around their segment's batch mean (only
    with per-pixel segment ids)."""
    out: dict[str, Tensor] = {}
    if cfg.dielectric_albedo_weight > 0:
        dark = 1.0 - mat["albedo"].detach().amax(-1, keepdim=True)  # [B, 1]
        if cfg.dielectric_albedo_gate == "stage1" and stage1_metallic is not None:
            dark = dark * (stage1_metallic < 0.5).to(dark)[:, None]
        out["dielectric_albedo"] = cfg.dielectric_albedo_weight * (mat["metallic"] * dark).mean()
    if cfg.saturation_weight > 0 and progress < cfg.saturation_until:
        r01 = (mat["roughness"] - cfg.roughness_min) / (1.0 - cfg.roughness_min)
        mr = torch.cat([mat["metallic"], r01], -1)
        out["saturation"] = cfg.saturation_weight * saturation_hinge(mr, cfg.saturation_margin)
    if cfg.metallic_binary_weight > 0:
        m = mat["metallic"]
        out["metallic_binary"] = cfg.metallic_binary_weight * (m * (1 - m)).mean()
    if cfg.dielectric_weight > 0:
        out["dielectric"] = cfg.dielectric_weight * mat["metallic"].mean()
    if cfg.segment_weight > 0 and segment is not None:
        mr = torch.cat([mat["metallic"], mat["roughness"]], -1)
        out["segment"] = cfg.segment_weight * _segment_spread(mr, segment)
    return out


def tangent_jitter(normals: Tensor, eps: float, generator: torch.Generator) -> Tensor:
    """Offsets [N, 3] in the plane orthogonal to unit ``normals`` [N, 3]: a Gaussian of std ``eps`` per axis
    with its normal part removed (NeRO's and TensoSDF's material smoothness stays on the surface)."""
    noise = torch.randn(normals.shape, generator=generator, device="cpu").to(normals) * eps
    return noise - (noise * normals).sum(-1, keepdim=True) * normals


def env_priors(env, cfg, anchor: Tensor | None = None) -> dict[str, Tensor]:
    """Weighted prior losses on a learned map (an EnvironmentMap or a NeuralEnvironment): ``env_white``
    (variance of the log of its solid-angle-weighted mean color across channels: grey light), ``env_tv`` (mean
    |step| of log radiance between neighbour texels, wrapping in u) and ``env_tether`` (solid-angle-weighted
    mean |log radiance - anchor| with ``anchor`` [H, W, 3] the log map the fit started from)."""
    out: dict[str, Tensor] = {}
    tether = cfg.env_tether_weight > 0 and anchor is not None
    if not env.trainable or not (tether or cfg.env_white_weight > 0 or cfg.env_tv_weight > 0):
        return out
    log_r = env.log_image()  # [H, W, 3]
    h, w = log_r.shape[:2]
    omega = row_solid_angles(h, w, log_r.dtype, log_r.device)[:, None, None]  # [H, 1, 1] steradians per texel
    if tether:
        dev = ((log_r - anchor).abs() * omega).sum() / (3.0 * omega.sum() * w)
        out["env_tether"] = cfg.env_tether_weight * dev
    if cfg.env_white_weight > 0:
        mean = (torch.exp(log_r) * omega).sum((0, 1)) / (omega.sum() * w)  # [3]
        lm = torch.log(mean.clamp_min(1e-8))
        out["env_white"] = cfg.env_white_weight * ((lm - lm.mean()) ** 2).mean()
    if cfg.env_tv_weight > 0:
        du = (log_r - torch.roll(log_r, 1, dims=1)).abs().mean()
        dv = (log_r[1:] - log_r[:-1]).abs().mean()
        out["env_tv"] = cfg.env_tv_weight * (du + dv)
    return out
